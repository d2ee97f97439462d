"""Git for the flows that change the desired state by pull request (promotions, rollbacks, image pins).

Every write happens in a scratch worktree made from the remote's branch (the person's own checkout,
index and current branch are never touched), ends in one push, and is undone locally when the push
fails. A change says what it is in its commit trailers, which `rollback` and `report` read back.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, CheckFailed, EnvironmentProblem

TRAILER_ENV = "Mlops-Environment"
TRAILER_KIND = "Mlops-Change"
PR_NUMBER = re.compile(r"(?:\(#(\d+)\)\s*$|^Merge pull request #(\d+))")


class GitError(EnvironmentProblem):
    """A git command failed for a reason that is not the caller's input."""


@dataclass(frozen=True)
class Git:
    root: Path

    def run(self, *args: str, check: bool = True, cwd: Path | None = None) -> str:
        try:
            result = subprocess.run(
                ["git", *args], cwd=cwd or self.root, capture_output=True, text=True, timeout=120, check=False
            )
        except FileNotFoundError:
            raise EnvironmentProblem("git is not installed", hint="install git; promotions are git commits") from None
        if check and result.returncode != 0:
            raise GitError(f"`git {' '.join(args)}` failed: {(result.stderr or result.stdout).strip()}")
        return result.stdout.strip()

    def run_raw(self, *args: str) -> str:
        """Like `run`, but the output as git wrote it (not stripped)."""
        result = subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise GitError(f"`git {' '.join(args)}` failed: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def ok(self, *args: str) -> bool:
        try:
            return (
                subprocess.run(
                    ["git", *args], cwd=self.root, capture_output=True, text=True, timeout=120, check=False
                ).returncode
                == 0
            )
        except FileNotFoundError:
            raise EnvironmentProblem("git is not installed") from None

    def require_repository(self) -> None:
        if not self.ok("rev-parse", "--git-dir"):
            raise BadInput(f"{self.root} is not a git repository: the desired state lives in git")

    def require_clean(self) -> None:
        # -z: NUL-separated entries, each "XY path" with nothing trimmed (a stripped first line lost a character)
        dirty = [
            entry for entry in self.run_raw("status", "--porcelain", "-z", "--untracked-files=no").split("\0") if entry
        ]
        if dirty:
            files = ", ".join(entry[3:] for entry in dirty[:5] if len(entry) > 3)
            raise BadInput(
                f"the working tree has uncommitted changes ({files})",
                hint="commit or stash them first, so the promotion is exactly one reviewed change",
            )

    def require_remote(self, remote: str) -> str:
        if not self.ok("remote", "get-url", remote):
            known = self.run("remote") or "none"
            raise BadInput(
                f"no git remote named {remote!r} (remotes: {known})",
                hint="a promotion is a pull request: add the GitHub remote (`git remote add origin …`) or use --remote",
            )
        return self.run("remote", "get-url", remote)

    def start_change(self, remote: str, base: str) -> str:
        """What every change by pull request checks first (a repository, a clean working tree, the
        remote), then fetch the remote's base: the ref the change is made from."""
        self.require_repository()
        self.require_clean()
        self.require_remote(remote)
        self.fetch(remote, base)
        return f"{remote}/{base}"

    def fetch(self, remote: str, branch: str) -> str:
        """Fetch `branch` from `remote`; the commit it is at."""
        result = subprocess.run(
            ["git", "fetch", "--quiet", remote, branch],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise EnvironmentProblem(
                f"cannot fetch {branch} from {remote}: {result.stderr.strip()}",
                hint="check the network and your access to the repository",
            )
        return self.run("rev-parse", f"refs/remotes/{remote}/{branch}")

    def commit_of(self, ref: str) -> str:
        if not ref or ref.startswith("-") or not self.ok("rev-parse", "--verify", "--quiet", ref + "^{commit}"):
            raise BadInput(f"unknown git ref {ref!r}", hint="fetch it first (in CI: fetch the pull request's base)")
        return self.run("rev-parse", ref + "^{commit}")

    def show(self, ref: str, path: str) -> str | None:
        """A file's content at `ref`, or None where it does not exist."""
        result = subprocess.run(
            ["git", "show", f"{ref}:{path}"], cwd=self.root, capture_output=True, text=True, timeout=60, check=False
        )
        return result.stdout if result.returncode == 0 else None

    @contextmanager
    def worktree(self, start: str) -> Iterator[Path]:
        """A scratch worktree at `start` (detached), removed afterwards."""
        scratch = Path(tempfile.mkdtemp(prefix="mlops-git-"))
        path = scratch / "tree"
        try:  # an interrupted `worktree add` is cleaned up too
            self.run("worktree", "add", "--quiet", "--detach", str(path), start)
            yield path
        finally:
            with signals_deferred():  # an interrupt here would leave the worktree registered
                self.run("worktree", "remove", "--force", str(path), check=False)
                shutil.rmtree(scratch, ignore_errors=True)
                self.run("worktree", "prune", check=False)


@contextmanager
def undone_if_interrupted(git: Git, branch: str, remote: str) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside the block removes what it made under `branch`: the local branch, and the
    remote branch where it points at the same commit (pushed by this run). The scratch worktree goes with
    `Git.worktree`. Further interrupts wait until the undo is done; then the interrupt goes on, and a
    re-run starts from scratch and converges."""
    existed = git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    try:
        yield
    except KeyboardInterrupt:
        with signals_deferred():
            local = git.run("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False)
            if local and not existed:
                listed = git.run("ls-remote", remote, f"refs/heads/{branch}", check=False).split()
                if listed and listed[0] == local:
                    git.run("push", "--quiet", remote, "--delete", branch, check=False)
                git.run("branch", "-D", branch, check=False)
            git.run("worktree", "prune", check=False)
        raise


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block (an undo, a clean-up) is done, then arrive as usual.
    Only the main thread receives signals; elsewhere the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda number, _frame: caught.append(number))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])


def pull_request_of(subject: str) -> int | None:
    """The pull request a commit subject names: GitHub's `… (#N)` (squash) or `Merge pull request #N …`."""
    match = PR_NUMBER.search(subject)
    return int(match.group(1) or match.group(2)) if match else None


def trailer(body: str, key: str) -> str | None:
    for line in reversed(body.splitlines()):
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    return None


def push(git: Git, tree: Path, remote: str, refspec: str, what: str) -> None:
    result = subprocess.run(
        ["git", "push", "--quiet", "--porcelain", remote, refspec],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise CheckFailed(
            f"pushing {what} to {remote} was refused: {' '.join(detail[-3:])}",
            hint="someone changed it first: fetch, check what the environment serves now, and run the command again",
        )


def commit_branch(
    git: Git,
    base_ref: str,
    change: tuple[str, str],
    *,
    message: str,
    branch: str,
    remote: str,
    push_branch: bool,
    expect_numstat: list[str] | None = None,
) -> str:
    """Commit `change` (path, new text) on `branch` made from `base_ref` in a scratch worktree, and push
    it. Only that path may change (with `expect_numstat`, exactly that `git diff --numstat`). A refused
    push deletes the local branch again. Returns the commit."""
    path, text = change
    with git.worktree(base_ref) as tree:
        (tree / path).write_text(text)
        numstat = git.run("diff", "--numstat", cwd=tree).split()
        if numstat[2::3] != [path] or (expect_numstat is not None and numstat != expect_numstat):
            raise CheckFailed(f"the edit changed more than intended in {path}: {' '.join(numstat)}")
        git.run("commit", "--quiet", "-am", message, cwd=tree)
        commit = git.run("rev-parse", "HEAD", cwd=tree)
        git.run("branch", branch, commit)
        if push_branch:
            try:
                push(git, tree, remote, f"{branch}:refs/heads/{branch}", f"branch {branch}")
            except CheckFailed:
                git.run("branch", "-D", branch, check=False)
                raise
    return commit

"""Git for the flows that change the desired state by pull request (promotions, rollbacks, image pins).

Every write happens in a scratch worktree made from the remote's branch (the person's own checkout,
index and current branch are never touched), ends in one push, and is undone locally when the push
fails. A change says what it is in its commit trailers, which `rollback` and `report` read back.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
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
        dirty = self.run("status", "--porcelain", "--untracked-files=no")
        if dirty:
            files = ", ".join(line[3:] for line in dirty.splitlines()[:5])
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
        self.run("worktree", "add", "--quiet", "--detach", str(path), start)
        try:
            yield path
        finally:
            self.run("worktree", "remove", "--force", str(path), check=False)
            shutil.rmtree(scratch, ignore_errors=True)
            self.run("worktree", "prune", check=False)


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

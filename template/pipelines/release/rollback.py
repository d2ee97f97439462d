"""`mlops rollback`: revert the last promotion of an environment, by pull request or pushed directly."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import BadInput, CheckFailed
from pipelines.common.git import Git, push, undone_if_interrupted
from pipelines.config.stackfiles import stack_path
from pipelines.release.pins import PinChange, pin_history
from pipelines.release.promote import PromotionRequest, model_and_order, open_pull_request, promotion_trailers


@dataclass
class RollbackResult:
    environment: str
    model: str
    reverted: PinChange
    commit: str
    pushed_to: str
    branch: str | None = None
    pull_request: str | None = None
    next_steps: list[str] = field(default_factory=list)


def rollback(
    root: Path,
    environment: str,
    *,
    remote: str = "origin",
    base: str = "main",
    direct: bool = False,
    open_pr: bool = True,
    reason: str = "",
) -> RollbackResult:
    """Revert the last promotion of `environment` on the remote's base: a pull request, or (direct) a push."""
    model, _ = model_and_order(root, environment, None, action="roll back")
    git = Git(root)
    base_ref = git.start_change(remote, base)
    history = pin_history(git, environment, base_ref)
    if not history:
        raise BadInput(f"{base_ref} has no change of {environment}'s pin to roll back")
    last = history[0]
    if last.kind == "rollback":
        raise BadInput(
            f"the last change of {environment}'s pin is already a rollback "
            f"(to version {last.after} in {last.commit[:8]}): nothing to roll back",
            hint="to go further back, promote that version explicitly",
        )
    path = stack_path(root, environment)
    subject = f"Roll back {environment} to {model} v{last.before}" if last.before else f"Roll back {environment}"
    body = (
        f"Reverts {last.commit[:12]} ({last.subject})."
        + (f"\nReason: {reason}" if reason else "")
        + "\n\n"
        + promotion_trailers("rollback", environment, model, last.before, last.after)
    )
    branch = f"rollback/{environment}-{last.commit[:8]}"
    with undone_if_interrupted(git, branch, remote):
        with git.worktree(base_ref) as tree:
            parents = git.run("rev-list", "--parents", "-n", "1", last.commit, cwd=tree).split()[1:]
            revert = ["revert", "--no-commit", *(["-m", "1"] if len(parents) > 1 else []), last.commit]
            if subprocess.run(["git", *revert], cwd=tree, capture_output=True, timeout=120, check=False).returncode:
                raise CheckFailed(
                    f"reverting {last.commit[:12]} conflicts with later changes of {path}",
                    hint="edit the pin back by hand in a pull request",
                )
            changed = git.run("diff", "--cached", "--name-only", cwd=tree).split()
            if changed != [path]:
                raise CheckFailed(
                    f"the promotion commit {last.commit[:12]} changed more than {path} ({', '.join(changed)})",
                    hint="revert it by hand in a pull request",
                )
            git.run("commit", "--quiet", "-m", f"{subject}\n\n{body}", cwd=tree)
            commit = git.run("rev-parse", "HEAD", cwd=tree)
            if direct:
                push(git, tree, remote, f"HEAD:refs/heads/{base}", f"the rollback to {base}")
                return RollbackResult(environment, model, last, commit, pushed_to=base)
            git.run("branch", "--force", branch, commit)
            try:
                push(git, tree, remote, f"{branch}:refs/heads/{branch}", f"branch {branch}")
            except CheckFailed:
                git.run("branch", "-D", branch, check=False)
                raise
        result = RollbackResult(environment, model, last, commit, pushed_to=branch, branch=branch)
        request = PromotionRequest(environment, model, last.before or 0, last.after, branch, commit, pushed=True)
        open_pull_request(root, request, base=base, remote=remote, title_body=(subject, body), open_pr=open_pr)
        result.pull_request, result.next_steps = request.pull_request, request.next_steps
    return result

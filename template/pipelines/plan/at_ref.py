"""The repository as it was at another git ref: its tree, and its Pulumi program planned offline.

A pull request is judged against its base: `mlops cost --compare REF` (and `mlops gate`) plan the
stacks twice, once as they are and once as REF had them, each with *that* tree's program and stack
files. REF's tree is exported with `git archive` into a scratch directory (the working tree, index
and branches are never touched), and its `infra` package stands in for the current one while it is
planned in this process (the cloud SDKs stay loaded, so the second plan costs about a second a stack).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BadInput, EnvironmentProblem
from infra.config import SettingsError, list_stacks
from pipelines.common.git import Git

if TYPE_CHECKING:
    from pipelines.plan.graph import Plan


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=120, check=False)
    except FileNotFoundError:
        raise EnvironmentProblem("git is not installed", hint="comparing with a ref reads the git history") from None


def resolve(root: Path, ref: str) -> str:
    """The commit a ref names, or BadInput naming the ref."""
    git = Git(root)
    git.require_repository()
    return git.commit_of(ref)


@contextmanager
def tree_at(root: Path, ref: str) -> Iterator[Path]:
    """REF's committed tree in a scratch directory, removed afterwards."""
    commit = resolve(root, ref)
    archive = _git(root, "archive", "--format=tar", commit)
    if archive.returncode != 0:
        raise EnvironmentProblem(f"git archive {ref} failed: {archive.stderr.decode().strip()}")
    with tempfile.TemporaryDirectory(prefix="mlops-ref-") as scratch:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(scratch, filter="data")
        yield Path(scratch)


@contextmanager
def program_of(tree: Path) -> Iterator[None]:
    """Import `infra` from `tree` instead of this checkout while planning; restore it afterwards."""
    saved = {name: module for name, module in sys.modules.items() if name == "infra" or name.startswith("infra.")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(tree))
    try:
        yield
    finally:
        sys.path.remove(str(tree))
        for name in [n for n in sys.modules if n == "infra" or n.startswith("infra.")]:
            del sys.modules[name]
        sys.modules.update(saved)


def plans_at(
    root: Path, ref: str, stacks: list[str], *, parallel: bool = True, progress: Callable[[str], None] | None = None
) -> dict[str, Plan | None]:
    """The stacks planned as REF had them; None for a stack REF has no file for (a new environment)."""
    from pipelines.plan.graph import PlanError  # noqa: PLC0415 -- loads the SDKs
    from pipelines.plan.offline import plan_stacks  # noqa: PLC0415 -- loads the SDKs

    with tree_at(root, ref) as tree:
        if not (tree / "Pulumi.yaml").is_file():
            raise BadInput(f"--compare {ref}: that commit has no Pulumi.yaml; it predates this platform")
        present = [stack for stack in stacks if stack in list_stacks(tree)]
        if progress:
            progress(f"planning {', '.join(present) or 'nothing'} as of {ref}")
        with program_of(tree):
            try:
                plans = {plan.stack: plan for plan in plan_stacks(tree, present, parallel=parallel)}
            except SettingsError as exc:
                raise BadInput(f"as of {ref}: {exc}") from None
            except PlanError as exc:
                raise EnvironmentProblem(f"as of {ref}: {exc}") from None
    return {stack: plans.get(stack) for stack in stacks}

"""Helpers shared by the template's scripts and tests: rendering the template, running commands."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import copier

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template"
CLOUD_CHOICES = ("aws", "gcp", "both")
# The lock of the generated project differs by cloud choice; one template file per choice.
LOCK_TEMPLATE = "{{% if clouds == '{cloud}' %}}uv.lock{{% endif %}}.jinja"
# Commits made by scripts and tests never depend on the machine's git identity.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "template-tests@example.invalid",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "template-tests@example.invalid",
}


def render(dst: Path, data: Mapping[str, Any] | None = None, src: Path = ROOT, vcs_ref: str = "HEAD") -> Path:
    """Render the template with default answers, overridden by `data`."""
    copier.run_copy(str(src), str(dst), data=dict(data or {}), defaults=True, vcs_ref=vcs_ref, quiet=True, unsafe=False)
    return dst


def run(
    cmd: Sequence[str | os.PathLike[str]],
    cwd: Path,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise with its output, so a test failure shows what went wrong."""
    full_env = {**os.environ, **GIT_ENV, **(env or {})}
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(map(str, cmd))}` failed in {cwd} with exit code {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def git_init(path: Path, message: str = "Initial commit") -> None:
    run(["git", "init", "-q", "-b", "main"], path)
    run(["git", "add", "-A"], path)
    run(["git", "commit", "-q", "-m", message], path)

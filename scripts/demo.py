"""`make demo`: render the template with its default answers and run the main job in the result.

Re-running is safe: the rendered files are refreshed in place (the generated project's .venv and
local state are kept), so a second run is fast; files a newer template no longer makes are removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, git_init, render, run

CLEAN_ENV = {"VIRTUAL_ENV": ""}


def step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def main(argv: list[str]) -> int:
    destination = (ROOT / (argv[0] if argv else "build/demo")).resolve()
    started = step(f"render the template (default answers) into {destination}")
    render(destination, {}) if not destination.exists() else _refresh(destination)
    if not (destination / ".git").exists():
        git_init(destination, "Initial platform from template")
    step("install the generated project (uv, from its lock)")
    run(["make", "install"], destination, env=CLEAN_ENV)
    step("main job: mlops local up (object store, MLflow, training, gated promotion, BentoML, smoke test)")
    up = subprocess.run(
        [destination / ".venv/bin/mlops", "local", "up"], cwd=destination, env={**os.environ, **CLEAN_ENV}, check=False
    )
    if up.returncode != 0:
        print(f"\nmlops local up failed (exit {up.returncode}); logs: {destination / '.mlops/local/logs'}")
        return up.returncode
    print(f"\nDemo ready in {time.monotonic() - started:.0f}s in {destination}")
    print("  make demo-down    stops the local servers (data kept; `mlops local down --purge` deletes it)")
    return 0


def _refresh(destination: Path) -> None:
    """Render again in place. A file the template no longer makes (a module that moved) is removed when
    it is as the demo's commit has it, so a new layout does not run beside the old one; a file someone
    changed is kept, and named."""
    import copier

    with tempfile.TemporaryDirectory() as scratch:
        made = {str(p.relative_to(scratch)) for p in render(Path(scratch) / "fresh", {}).rglob("*") if p.is_file()}
        made = {path.removeprefix("fresh/") for path in made}
    tracked = run(["git", "ls-files"], destination).stdout.splitlines() if (destination / ".git").exists() else []
    for path in sorted(set(tracked) - made):
        if not (destination / path).exists():
            continue
        if run(["git", "diff", "--quiet", "HEAD", "--", path], destination, check=False).returncode == 0:
            (destination / path).unlink()
            print(f"    removed {path} (no longer in the template)")
        else:
            print(f"    kept {path}: no longer in the template, but changed here")
    copier.run_copy(
        str(ROOT),
        str(destination),
        defaults=True,
        overwrite=True,
        vcs_ref="HEAD",
        quiet=True,
        unsafe=False,
        data={},
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

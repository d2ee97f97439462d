"""`make demo`: render the template with its default answers and run the main job in the result.

Re-running is safe: the rendered files are refreshed in place (the generated project's .venv and
local state are kept), so a second run is fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    import copier

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

"""Benchmark `mlops gate` on a pin-only change (the issue's target: at most 10 s).

    uv run mlops local up                  # the registries the gate reads
    uv run python -m pipelines.bench.gate [--runs 3]

A scratch copy of this repository (Pulumi.yaml, stacks, program, model policies) goes to a bare
remote; `mlops promote` opens the change that pins dev's newest registry version in dev, and each
run is a fresh `mlops gate --env dev` process on that branch, as the promote workflow runs it. The
scratch directory is removed afterwards. Bounded: each command must finish within 120 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infra.config import find_root, load_stack, project_name
from pipelines.release.pins import set_pin

MLOPS = str(Path(sys.executable).parent / "mlops")
TARGET_S = 10.0
IDENTITY = {"NAME": "Bench", "EMAIL": "bench@example.invalid"}


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise SystemExit(f"`{' '.join(cmd)}` failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    root = find_root()
    from core.registry import champion, client_for, registered_name  # noqa: PLC0415
    from pipelines.local.environment import LocalEnvironment  # noqa: PLC0415

    home = Path(os.environ.get("MLOPS_LOCAL_HOME") or root / ".mlops" / "local").resolve()
    model = load_stack(root, "local").serving.model.name
    local = LocalEnvironment(root, model, home=home)
    if "tracking" not in local.running():
        print("the local environment is not running: start it with `mlops local up`")
        return 3
    serving = champion(client_for(local.tracking_uri()), registered_name("dev", model))
    version = serving.model_version if serving else 1
    env = {**os.environ, "MLOPS_LOCAL_HOME": str(home)}
    env.update({f"GIT_{who}_{key}": value for key, value in IDENTITY.items() for who in ("AUTHOR", "COMMITTER")})
    with tempfile.TemporaryDirectory(prefix="mlops-bench-gate-") as scratch:
        base = Path(scratch)
        seed = base / "work"
        for part in ("stacks", "infra", "policies/models"):
            shutil.copytree(root / part, seed / part, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(root / "Pulumi.yaml", seed / "Pulumi.yaml")
        dev = seed / "stacks" / "Pulumi.dev.yaml"
        dev.write_text(set_pin(dev.read_text(), dev.name, project_name(root), None))  # dev serves nothing yet
        for cmd in (
            ["git", "init", "-q", "-b", "main"],
            ["git", "add", "."],
            ["git", "commit", "-q", "-m", "base"],
            ["git", "init", "-q", "--bare", "-b", "main", str(base / "origin.git")],
            ["git", "remote", "add", "origin", str(base / "origin.git")],
            ["git", "push", "-q", "origin", "main"],
        ):
            _run(cmd, seed, env)
        env["MLOPS_ROOT"] = str(seed)
        _run([MLOPS, "promote", model, "--version", str(version), "--to", "dev", "--no-pr"], seed, env)
        _run(["git", "checkout", "-q", f"promote/dev/{model}-v{version}"], seed, env)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            _run([MLOPS, "gate", "--env", "dev", "--base", "origin/main", "--format", "json"], seed, env)
            times.append(round(time.perf_counter() - started, 2))
    clouds = ", ".join(c.value for c in load_stack(root, "dev").clouds)
    median = statistics.median(times)
    print(f"mlops gate --env dev, pin-only change (v{version}; clouds {clouds}): runs {times} s, median {median} s")
    print(f"target <= {TARGET_S:g} s: {'met' if median <= TARGET_S else 'NOT met'} ({median} s)")
    return 0 if median <= TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())

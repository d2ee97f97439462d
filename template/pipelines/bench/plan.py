"""Benchmark `mlops plan --all` (with and without cloud shards) and `mlops policy check --all` on top of it.

    uv run python -m pipelines.bench.plan [--runs 3] [--json reports/bench-plan.json]

Each run is a fresh `mlops plan --all --format json` process (imports included, as a person or CI
would run it). The first run may also compile bytecode; the table shows every run and the median.
Bounded: each run must finish within 120 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MLOPS = str(Path(sys.executable).parent / "mlops")


def run_once(extra: list[str], command: str = "plan") -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    argv = [MLOPS, "plan"] if command == "plan" else [MLOPS, "policy", "check"]
    result = subprocess.run(
        [*argv, "--all", "--format", "json", *extra], capture_output=True, text=True, timeout=120, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"mlops {command} failed (exit {result.returncode}):\n{result.stderr}")
    data = json.loads(result.stdout)
    if command == "plan":
        return elapsed, {p["stack"]: p["resource_count"] for p in data["plans"]}
    return elapsed, {"check_seconds": data["seconds"], "mandatory": sum(r["mandatory"] for r in data["reports"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"cores": os.cpu_count()}
    for label, extra in (("sharded", []), ("serial", ["--serial"])):
        times = []
        for _ in range(max(1, args.runs)):
            elapsed, counts = run_once(extra)
            times.append(round(elapsed, 2))
        figures[label] = {"runs_s": times, "median_s": statistics.median(times), "resources": counts}
        print(f"plan --all {label:8s} runs {times} s, median {statistics.median(times):.2f} s; resources {counts}")
    policy_runs = [run_once([], "policy") for _ in range(max(1, args.runs))]
    walls = [round(wall, 2) for wall, _ in policy_runs]
    checks = [info["check_seconds"] for _, info in policy_runs]
    overhead = statistics.median(walls) - figures["sharded"]["median_s"]  # type: ignore[index]
    figures["policy"] = {"runs_s": walls, "check_only_s": checks, "median_overhead_s": round(overhead, 2)}
    print(
        f"policy check --all runs {walls} s; rule evaluation alone {checks} s; "
        f"median on top of plan {overhead:.2f} s (target <= 2 s)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    target = 10.0
    median = figures["sharded"]["median_s"]  # type: ignore[index]
    verdict = "met" if median <= target else "NOT met"
    print(f"target <= {target:.0f} s on {os.cpu_count()} cores: {verdict} ({median:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

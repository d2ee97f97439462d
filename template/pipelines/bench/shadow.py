"""Benchmark what shadow scoring costs the answered requests: the serving app alone, with a fast
candidate scoring every request, and with a slow one.

    uv run python -m pipelines.bench.shadow [--seconds 4] [--repeat 12] [--output FILE]

It trains the reference model into a scratch SQLite registry (version 1, the champion), a second fit
of it (version 2: the fast candidate, a dot product like the champion) and registers a brute-force
nearest-neighbours model over 100,000 rows (version 3: the slow candidate, milliseconds a request).
Then it starts the serving app as the Deployment runs it (one worker, on CPU 0; wrk on the other
CPUs) five times: with no shadow, and with version 2 or 3 as shadow at the stack default's sampling
(`SHADOW_SAMPLE_PCT=10`) and at 100 %. It loads each with 1-row requests over 8 connections,
`--repeat` rounds of `--seconds` each. The servers run side by side (an idle
one costs the others next to nothing; drift checks are off in all of them, and a second server
without a shadow shows the noise floor) and the rounds interleave the cases, so that the machine's own
slow drifts (other tenants, kernel threads) fall on every case alike. For the shadowed cases it reads
from /metrics what the candidate scored and dropped, and how often it agreed.

The target (issue: progressive delivery): p99 with a shadow at the default sampling within 10 % of p99
without one (the mean of the two servers without one; their own difference is the noise floor); the
100 % cases show the worst case.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from apps.serving.smoke import sample_row
from infra.config import find_root
from pipelines.bench.serving import MODEL, cpus_for_servers, scratch_registry, start_servers
from pipelines.bench.wrk import find_wrk, run_wrk
from pipelines.common.procs import Proc, stop, wait_http

CONNECTIONS = 8
TARGET_P99_RATIO = 1.10
# case -> (shadow version, sample %): the stack default samples 10 % (judged); 100 % shows the worst case.
CASES: dict[str, tuple[str | None, int]] = {
    "no shadow": (None, 0),
    "no shadow (a second server: the noise floor)": (None, 0),
    "fast candidate (v2), 10 %": ("2", 10),
    "slow candidate (v3), 10 %": ("3", 10),
    "fast candidate (v2), 100 %": ("2", 100),
    "slow candidate (v3), 100 %": ("3", 100),
}
JUDGED = ("fast candidate (v2), 10 %", "slow candidate (v3), 10 %")


def candidates(tracking_uri: str) -> None:
    """Versions 2 (another fit of the reference model) and 3 (a brute-force nearest-neighbours model over
    100,000 rows: a few ms of work a request) of MODEL."""
    import mlflow  # noqa: PLC0415
    import mlflow.sklearn  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415

    from apps.training.data import split  # noqa: PLC0415
    from apps.training.train import TrainingConfig, train  # noqa: PLC0415

    train(tracking_uri, MODEL, TrainingConfig(regularization_c=0.05))
    data = split(0.25, 42)
    x = np.asarray(data.x_train, dtype=np.float64)
    copies = -(-100_000 // len(x))
    noisy = np.tile(x, (copies, 1)) * np.random.default_rng(0).normal(1, 0.01, (copies * len(x), x.shape[1]))
    neighbours = KNeighborsClassifier(n_neighbors=15, algorithm="brute").fit(noisy, np.tile(data.y_train, copies))
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("training")
    with mlflow.start_run(run_name="bench-slow-candidate"):
        mlflow.sklearn.log_model(neighbours, name="model", registered_model_name=MODEL)


def shadow_counts(proc: Proc) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(proc.url + "/metrics", timeout=10).text):
        for sample in family.samples:
            if sample.name == "model_shadow_requests_total":
                counts[sample.labels["outcome"]] = counts.get(sample.labels["outcome"], 0) + sample.value
            elif sample.name == "model_shadow_rows_total":
                key = f"rows_{sample.labels['agreement']}"
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def start_case(root: Path, home: Path, tracking_uri: str, shadow: str | None, pct: int) -> Proc:
    pin, _ = cpus_for_servers()
    extra = {"SHADOW_MODEL_VERSION": shadow, "SHADOW_SAMPLE_PCT": str(pct)} if shadow else {}
    case_home = Path(tempfile.mkdtemp(prefix=f"case-{shadow or 'none'}-{pct}-", dir=home))
    # No periodic drift checks: a neighbour's would stall the core every server shares.
    extra["DRIFT_CHECK_SECONDS"] = "0"
    procs = start_servers(root, case_home, tracking_uri, 60, pin, servers=("bentoml",), extra_env=extra)
    return procs["bentoml"]


def wait_ready(proc: Proc, shadow: str | None) -> None:
    wait_http(proc, "/readyz", timeout=180)
    if shadow:  # the candidate loads beside the champion, in its own process
        for _ in range(360):
            if httpx.post(proc.url + "/model", json={}, timeout=10).json()["shadow"]["loaded"]:
                return
            time.sleep(0.5)
        raise SystemExit(f"shadow version {shadow} did not load within 180 s; see {proc.log}")


def measure(procs: dict[str, Proc], *, seconds: float, repeat: int) -> dict[str, dict[str, Any]]:
    """`repeat` rounds, each loading every case once in turn (the machine's slow drifts hit all alike)."""
    _, cpus = cpus_for_servers()
    for proc in procs.values():  # warm-up
        run_wrk(proc.url + "/predict", body(), connections=CONNECTIONS, seconds=2, cpus=cpus)
    before = {name: shadow_counts(proc) for name, proc in procs.items()}
    runs: dict[str, list[Any]] = {name: [] for name in procs}
    for round_ in range(repeat):
        for name, proc in procs.items():
            result = run_wrk(proc.url + "/predict", body(), connections=CONNECTIONS, seconds=seconds, cpus=cpus)
            runs[name].append(result)
            rate, p99 = result.requests_per_second, result.p99_ms
            print(f"  round {round_ + 1} {name:<40} {rate:8.1f} req/s  p99 {p99:6.2f} ms", flush=True)
    rows = {}
    for name, proc in procs.items():
        after = shadow_counts(proc)
        median = sorted(runs[name], key=lambda r: r.p99_ms)[len(runs[name]) // 2]
        counts = {k: int(after.get(k, 0) - before[name].get(k, 0)) for k in sorted(set(after) | set(before[name]))}
        rows[name] = {**median.as_dict(), "runs_p99_ms": [round(r.p99_ms, 2) for r in runs[name]], "shadow": counts}
    return rows


def body() -> bytes:
    return json.dumps({"instances": [sample_row()]}).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each run (default 4)")
    parser.add_argument("--repeat", type=int, default=12, help="rounds; the median paired p99 counts (default 12)")
    parser.add_argument("--output", type=Path, help="JSON file (default .mlops/bench/shadow.json)")
    args = parser.parse_args(argv)
    if not 2 <= args.seconds <= 600 or not 1 <= args.repeat <= 50:
        parser.error("--seconds must be in [2, 600] and --repeat in 1..50")
    find_wrk(install=True)
    root = find_root()
    output = args.output or root / ".mlops" / "bench" / "shadow.json"
    with tempfile.TemporaryDirectory(prefix="bench-shadow-") as tmp:
        home = Path(tmp)
        tracking_uri = scratch_registry(home)
        candidates(tracking_uri)
        procs: dict[str, Proc] = {}
        try:
            for name, (shadow, pct) in CASES.items():
                procs[name] = start_case(root, home, tracking_uri, shadow, pct)
            for name, (shadow, _) in CASES.items():
                wait_ready(procs[name], shadow)
            print(f"{os.cpu_count()} CPUs; 1-row requests over {CONNECTIONS} connections", flush=True)
            rows = measure(procs, seconds=args.seconds, repeat=args.repeat)
        finally:
            for proc in procs.values():
                stop(proc)
    print(f"{'case':<40} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  shadow")
    for name, row in rows.items():
        print(
            f"{name:<40} {row['requests_per_second']:8.1f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
            f"{row['max_ms']:7.1f}  {row['shadow'] or '-'}"
        )
    # Paired within each round: a case's p99 over the mean of the two servers without a shadow in the
    # same round (the machine's bursts of noise hit a whole round), the median over the rounds.
    baselines = [name for name, (shadow, _) in CASES.items() if shadow is None]
    per_round = [statistics.mean(runs) for runs in zip(*(rows[name]["runs_p99_ms"] for name in baselines), strict=True)]
    ratios = {
        name: round(statistics.median(p99 / base for p99, base in zip(row["runs_p99_ms"], per_round, strict=True)), 3)
        for name, row in rows.items()
    }
    met = all(ratios[name] <= TARGET_P99_RATIO for name in JUDGED)
    for name, ratio in ratios.items():
        judged = f" (target <= {TARGET_P99_RATIO:.2f}x)" if name in JUDGED else " (reported, not judged)"
        print(f"{name}: p99 {ratio:.2f}x of the servers without a shadow (median of rounds){judged}")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"cpu_count": os.cpu_count(), "cases": rows, "p99_ratios": ratios}, indent=2) + "\n")
    print(f"{'target met' if met else 'TARGET MISSED'}; JSON: {output}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

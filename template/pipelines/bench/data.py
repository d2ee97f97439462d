"""Benchmark `mlops data add` of a large table and `mlops train --dataset` on it, end to end with lineage.

    uv run python -m pipelines.bench.data [--rows 1000000] [--columns 30] [--json reports/bench-data.json]

It brings up a local environment of its own (a scratch MLOPS_LOCAL_HOME: a running one is left alone),
writes a Parquet file of `--rows` rows and `--columns` columns (numeric features and a 0/1 label that
depends on them), then runs the real CLI: `mlops data add` into the dev bucket and `mlops train
--dataset` on that version (read and checked, features stored, model logged and registered with its
lineage and explanation). Each command's wall time and peak memory (the kernel's maximum RSS of the
command and what it waited for) are printed against the targets: add ≤ 10 s and ≤ 1.5 GB, train ≤ 90 s.
Everything it starts is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infra.config import load_stack
from pipelines.local.environment import LocalEnvironment

ROOT = Path(__file__).resolve().parents[2]
MLOPS = str(Path(sys.executable).parent / "mlops")
TARGETS = {"add_seconds": 10.0, "add_peak_gb": 1.5, "train_seconds": 90.0}


def synthetic(rows: int, columns: int, path: Path) -> Path:
    rng = np.random.default_rng(0)
    features = {f"f{i:02d}": rng.normal(i % 7, 1 + i / 10, rows) for i in range(columns - 1)}
    weights = rng.normal(size=columns - 1)
    signal = sum(w * (v - v.mean()) / v.std() for w, v in zip(weights, features.values(), strict=True))
    label = (signal + rng.normal(scale=2.0, size=rows) > 0).astype("int64")
    pq.write_table(pa.table({**features, "label": label}), path)
    return path


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    """(seconds, peak RSS in GB, the JSON it printed) of `mlops ARGS -f json`."""
    started = time.monotonic()
    process = subprocess.Popen([MLOPS, *args, "-f", "json"], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"`mlops {' '.join(args)}` exited with {process.returncode}")
    return seconds, usage.ru_maxrss / 1024**2, json.loads(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=30, help="columns in all, the label included")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not 1_000 <= args.rows <= 20_000_000 or not 3 <= args.columns <= 500:
        parser.error("--rows must be in 1000..20000000 and --columns in 3..500")
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        home = Path(tmp) / "local"
        env = LocalEnvironment(ROOT, load_stack(ROOT, "local").serving.model.name, home=home)
        print("bringing up a local environment of its own …", flush=True)
        saved = dict(os.environ)
        try:
            env.up()
            cli_env = {k: v for k, v in saved.items() if not k.startswith(("AWS_", "MLFLOW_", "MLOPS_"))}
            cli_env |= {"MLOPS_LOCAL_HOME": str(home), "MLOPS_ROOT": str(ROOT)}
            data = synthetic(args.rows, args.columns, Path(tmp) / "events.parquet")
            size = data.stat().st_size / 1e6
            print(f"{args.rows:,} rows x {args.columns} columns: {size:.0f} MB of Parquet", flush=True)
            add = timed(["data", "add", str(data), "--name", "bench-events", "--label", "label"], cli_env)
            print(f"mlops data add: {add[0]:.1f} s, peak {add[1]:.2f} GB ({add[2]['sha256'][:12]})", flush=True)
            train = timed(["train", "--dataset", "bench-events@latest", "-p", "group_feature=f00"], cli_env)
            print(f"mlops train --dataset: {train[0]:.1f} s, peak {train[1]:.2f} GB (v{train[2]['version']})")
        finally:
            env.down(purge=True)
            os.environ.clear()
            os.environ.update(saved)
    results = {
        "rows": args.rows,
        "columns": args.columns,
        "add_seconds": round(add[0], 2),
        "add_peak_gb": round(add[1], 3),
        "train_seconds": round(train[0], 2),
        "train_peak_gb": round(train[1], 3),
        "roc_auc": round(train[2]["metrics"]["roc_auc"], 4),
    }
    verdicts = {name: results[name] <= bound for name, bound in TARGETS.items()}
    for name, bound in TARGETS.items():
        print(f"  {name}: {results[name]} (target ≤ {bound}) {'ok' if verdicts[name] else 'MISSED'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**results, "targets": TARGETS, "met": verdicts}, indent=2))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark our BentoML service against `mlflow models serve`, same model, same machine, one run.

    uv run python -m pipelines.bench.serving [--seconds 10] [--requests 3000] [--output FILE]

It trains the reference model into a scratch SQLite registry, starts both servers on loopback (each
in its own process group, stopped at the end), checks they answer the same prediction, then loads
each with 1, 8 and 32 concurrent clients sending 1-row and 64-row requests. Every cell is bounded
by a request count and a time limit. It prints a table and writes JSON (default
`.mlops/bench/serving.json`). The target (issue: serving performance): with 8 clients and 1-row
requests, at least 5x the requests/s of `mlflow models serve`, with p99 at most 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from apps.serving.smoke import EXAMPLE, sample_row
from infra.config import find_root
from pipelines.bench.loadgen import LoadResult, run_load
from pipelines.common.procs import LOOPBACK, Proc, free_port, serving_command, spawn, stop, wait_http

CLIENTS = (1, 8, 32)
ROWS = (1, 64)
TARGET_RATIO, TARGET_P99_MS = 5.0, 50.0
MODEL = "prod.diagnosis"


def _bodies(rows: int) -> dict[str, bytes]:
    row = sample_row()
    columns = json.loads(EXAMPLE.read_text())["columns"]
    return {
        "bentoml": json.dumps({"instances": [row] * rows}).encode(),
        "mlflow": json.dumps({"dataframe_split": {"columns": columns, "data": [row] * rows}}).encode(),
    }


def _start(root: Path, home: Path, tracking_uri: str) -> dict[str, Proc]:
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(home / "bentoml"),
        "MODEL_NAME": MODEL,
        "MODEL_VERSION": "1",
        "SERVING_ENVIRONMENT": "bench",
    }
    bin_dir = Path(sys.executable).parent
    procs: dict[str, Proc] = {}
    port = free_port()
    procs["bentoml"] = spawn(
        "bentoml",
        serving_command(bin_dir, port),
        port=port,
        log=home / "bentoml.log",
        url=f"http://{LOOPBACK}:{port}",
        env=env,
        cwd=root,
    )
    port = free_port()
    host = ["--host", LOOPBACK, "--port", str(port)]
    procs["mlflow"] = spawn(
        "mlflow",
        [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}/1", "--env-manager", "local", *host],
        port=port,
        log=home / "mlflow.log",
        url=f"http://{LOOPBACK}:{port}",
        env=env,
        cwd=root,
    )
    return procs


def _same_prediction(procs: dict[str, Proc]) -> int:
    bodies, json_type = _bodies(1), {"content-type": "application/json"}
    ours = httpx.post(f"{procs['bentoml'].url}/predict", content=bodies["bentoml"], headers=json_type, timeout=10)
    theirs = httpx.post(f"{procs['mlflow'].url}/invocations", content=bodies["mlflow"], headers=json_type, timeout=10)
    if ours.status_code != 200 or theirs.status_code != 200:
        raise SystemExit(f"a server refused the sample row: bentoml {ours.text[:200]}, mlflow {theirs.text[:200]}")
    if ours.json()["predictions"] != theirs.json()["predictions"]:
        raise SystemExit(f"the servers disagree: bentoml {ours.text[:200]}, mlflow {theirs.text[:200]}")
    return int(ours.json()["predictions"][0])


def measure(procs: dict[str, Proc], *, seconds: float, requests: int) -> list[dict[str, Any]]:
    paths = {"bentoml": "/predict", "mlflow": "/invocations"}
    cells = []
    for rows in ROWS:
        bodies = _bodies(rows)
        for server in ("bentoml", "mlflow"):
            url = procs[server].url + paths[server]
            run_load(url, bodies[server], concurrency=4, max_requests=100, max_seconds=5)  # warm-up
            for clients in CLIENTS:
                result: LoadResult = run_load(
                    url, bodies[server], concurrency=clients, max_requests=requests, max_seconds=seconds
                )
                cells.append({"server": server, "rows": rows, **result.as_dict()})
                print(
                    f"  {server:8} {clients:>2} clients {rows:>2} rows: {result.throughput:7.1f} req/s  "
                    f"p99 {result.percentile(99):7.1f} ms  errors {result.errors}",
                    flush=True,
                )
    return cells


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(c["server"], c["concurrency"], c["rows"]): c for c in cells}
    ratios = {
        f"{clients}x{rows}": round(
            by[("bentoml", clients, rows)]["requests_per_second"]
            / max(by[("mlflow", clients, rows)]["requests_per_second"], 1e-9),
            2,
        )
        for clients in CLIENTS
        for rows in ROWS
    }
    ours = by[("bentoml", 8, 1)]
    met = ratios["8x1"] >= TARGET_RATIO and ours["p99_ms"] <= TARGET_P99_MS and ours["errors"] == 0
    return {"ratios": ratios, "target": {"ratio": TARGET_RATIO, "p99_ms": TARGET_P99_MS, "met": met}}


def table(cells: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [
        f"{'server':8} {'clients':>7} {'rows':>4} {'requests':>8} {'errors':>6} {'req/s':>8} {'rows/s':>9} "
        f"{'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    ]
    for c in sorted(cells, key=lambda c: (c["rows"], c["concurrency"], c["server"])):
        lines.append(
            f"{c['server']:8} {c['concurrency']:>7} {c['rows']:>4} {c['requests']:>8} {c['errors']:>6} "
            f"{c['requests_per_second']:>8.1f} {c['requests_per_second'] * c['rows']:>9.0f} "
            f"{c['p50_ms']:>7.1f} {c['p95_ms']:>7.1f} {c['p99_ms']:>7.1f}"
        )
    ratios = ", ".join(f"{k.replace('x', ' clients/')} rows {v:.1f}x" for k, v in summary["ratios"].items())
    lines.append(f"bentoml / mlflow req/s: {ratios}")
    target = summary["target"]
    lines.append(
        f"target (8 clients, 1 row): >= {target['ratio']:g}x mlflow and p99 <= {target['p99_ms']:g} ms: "
        + ("met" if target["met"] else "NOT met")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per cell (default 10)")
    parser.add_argument("--requests", type=int, default=3000, help="request limit per cell (default 3000)")
    parser.add_argument("--output", type=Path, help="JSON file (default .mlops/bench/serving.json)")
    args = parser.parse_args(argv)
    root = find_root()
    output = args.output or root / ".mlops" / "bench" / "serving.json"
    from mlflow import MlflowClient  # noqa: PLC0415

    from apps.training.train import train  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        home = Path(tmp)
        tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        MlflowClient(tracking_uri).create_experiment("training", artifact_location=str(home / "artifacts"))
        print("training the reference model into a scratch registry", flush=True)
        train(tracking_uri, MODEL)
        started = time.monotonic()
        procs = _start(root, home, tracking_uri)
        try:
            wait_http(procs["bentoml"], "/readyz", timeout=120)
            wait_http(procs["mlflow"], "/ping", timeout=120)
            print(
                f"both servers ready in {time.monotonic() - started:.0f} s; same prediction: "
                f"class {_same_prediction(procs)}",
                flush=True,
            )
            cells = measure(procs, seconds=args.seconds, requests=args.requests)
        finally:
            for proc in procs.values():
                stop(proc)
    summary = summarize(cells)
    report = {"cpu_count": os.cpu_count(), "cells": cells, **summary}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(cells, summary))
    print(f"JSON: {output}")
    return 0 if summary["target"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark the serving app against a bare ASGI app and `mlflow models serve`: same model, one run.

    uv run python -m pipelines.bench.serving [--seconds 10] [--repeat 3] [--drift-seconds 10]
                                             [--profile] [--output FILE]

It trains the reference model into a scratch SQLite registry and starts, on loopback, each in its
own process group (stopped at the end): the BentoML service as the Deployment runs it (one worker),
the bare ASGI baseline (`pipelines/bench/baseline.py`, the same model's weights, under the same
uvicorn) and `mlflow models serve`. It checks that the three give the same prediction, then loads
each with wrk (installed from Debian when missing and run as root) over 1, 8 and 32 connections with
1-row and 64-row requests; every cell lasts `--seconds`, each request at most 10 s. The servers run on
CPU 0 and wrk on the others (with 2 or more CPUs), so the load generator does not take the server's
core. The cells that the targets judge (8 connections) run `--repeat` times; the median counts.
The serving app recomputes its drift gauges every `--drift-seconds` (deployed: 60 s) during the
run, and each row says how many drift checks fell inside it.

`--profile` also samples the serving worker with py-spy under the 8-connection load and prints where
the time goes (the raw stacks, for a flame graph, go beside the JSON).

It prints a table and writes JSON (default `.mlops/bench/serving.json`). The targets (issue: serving
near the machine's limit), 8 connections: 1-row requests/s >= 50 % of the baseline's and >= 30x
`mlflow models serve`'s, p99 <= 10 ms, slowest <= 50 ms; 64-row requests >= 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from apps.serving.smoke import EXAMPLE, sample_row
from infra.config import find_root
from pipelines.bench.wrk import LoadResult, find_wrk, run_wrk
from pipelines.common.procs import LOOPBACK, Proc, free_port, serving_command, spawn, stop, wait_http

SERVERS = ("bentoml", "baseline", "mlflow")
PATHS = {"bentoml": "/predict", "baseline": "/", "mlflow": "/invocations"}
CONNECTIONS, ROWS, JUDGED = (1, 8, 32), (1, 64), 8
TARGETS = {"of_baseline": 0.5, "of_mlflow": 30.0, "p99_ms": 10.0, "max_ms": 50.0, "rows_per_second": 50_000}
MODEL = "prod.diagnosis"


def _bodies(rows: int) -> dict[str, bytes]:
    row = sample_row()
    columns = json.loads(EXAMPLE.read_text())["columns"]
    instances = json.dumps({"instances": [row] * rows}).encode()
    return {
        "bentoml": instances,
        "baseline": instances,
        "mlflow": json.dumps({"dataframe_split": {"columns": columns, "data": [row] * rows}}).encode(),
    }


def cpus_for_servers() -> tuple[list[str], str | None]:
    """(command prefix for the servers, CPUs for wrk): servers on CPU 0, wrk on the rest."""
    count, taskset = os.cpu_count() or 1, shutil.which("taskset")
    if count < 2 or taskset is None:
        return [], None
    return [taskset, "-c", "0"], f"1-{count - 1}"


def _write_weights(tracking_uri: str, path: Path) -> None:
    """The served version's compiled weights, for the baseline (the same arithmetic as serving's)."""
    import mlflow.sklearn  # noqa: PLC0415

    from apps.serving.model import compile_linear  # noqa: PLC0415

    mlflow.set_tracking_uri(tracking_uri)
    compiled = compile_linear(mlflow.sklearn.load_model(f"models:/{MODEL}/1"))
    if compiled is None:
        raise SystemExit("the reference model did not compile to a linear form; the baseline needs one")
    weights, intercept = compiled
    path.write_text(json.dumps({"weights": weights.tolist(), "intercept": intercept}))


def scratch_registry(home: Path) -> str:
    """A SQLite registry in `home` with the reference model trained into it (version 1); its URI."""
    from mlflow import MlflowClient  # noqa: PLC0415

    from apps.training.train import train  # noqa: PLC0415

    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    MlflowClient(tracking_uri).create_experiment("training", artifact_location=str(home / "artifacts"))
    print("training the reference model into a scratch registry", flush=True)
    train(tracking_uri, MODEL)
    return tracking_uri


def start_servers(  # noqa: PLR0917 -- the bench scripts' one way to start servers
    root: Path,
    home: Path,
    tracking_uri: str,
    drift_seconds: float,
    pin: list[str],
    servers: tuple[str, ...] = SERVERS,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Proc]:
    bin_dir = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "true",
        "BENTOML_HOME": str(home / "bentoml"),
        "MODEL_NAME": MODEL,
        "MODEL_VERSION": "1",
        "SERVING_ENVIRONMENT": "bench",
        "DRIFT_CHECK_SECONDS": f"{drift_seconds:g}",
        "MODEL_WEIGHTS_FILE": str(home / "weights.json"),
        **(extra_env or {}),
    }
    commands = {
        "bentoml": lambda port: serving_command(bin_dir, port),
        "baseline": lambda port: [
            str(bin_dir / "uvicorn"),
            "pipelines.bench.baseline:app",
            *("--host", LOOPBACK, "--port", str(port), "--lifespan", "off", "--no-access-log"),
            *("--log-level", "warning"),
        ],
        "mlflow": lambda port: [
            str(bin_dir / "mlflow"),
            *("models", "serve", "-m", f"models:/{MODEL}/1", "--env-manager", "local"),
            *("--host", LOOPBACK, "--port", str(port)),
        ],
    }
    procs: dict[str, Proc] = {}
    try:
        for name in servers:
            command, port = commands[name], free_port()
            procs[name] = spawn(
                name,
                [*pin, *command(port)],
                port=port,
                log=home / f"{name}.log",
                url=f"http://{LOOPBACK}:{port}",
                env=env,
                cwd=root,
            )
    except BaseException:
        for proc in procs.values():
            stop(proc)
        raise
    return procs


def _predictions(procs: dict[str, Proc]) -> dict[str, list[int]]:
    """Each server's answer to the sample row; all three must agree."""
    bodies, answers = _bodies(1), {}
    for name, proc in procs.items():
        response = httpx.post(
            proc.url + PATHS[name], content=bodies[name], headers={"content-type": "application/json"}, timeout=10
        )
        if response.status_code != 200:
            raise SystemExit(f"{name} refused the sample row: HTTP {response.status_code} {response.text[:200]}")
        answers[name] = [int(p) for p in response.json()["predictions"]]
    if len({tuple(a) for a in answers.values()}) != 1:
        raise SystemExit(f"the servers disagree on the sample row: {answers}")
    return answers


def _drift_checks(proc: Proc) -> int:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    text = httpx.get(proc.url + "/metrics", timeout=10).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "model_drift_checks_total"
        )
    )


def _load(proc: Proc, server: str, body: bytes, connections: int, seconds: float, *, cpus: str | None) -> LoadResult:
    return run_wrk(proc.url + PATHS[server], body, connections=connections, seconds=seconds, cpus=cpus)


def measure(procs: dict[str, Proc], *, seconds: float, repeat: int, cpus: str | None) -> list[dict[str, Any]]:
    cells = []
    for rows in ROWS:
        bodies = _bodies(rows)
        for server in SERVERS:
            _load(procs[server], server, bodies[server], JUDGED, 2, cpus=cpus)  # warm-up
            for connections in CONNECTIONS:
                checks_before = _drift_checks(procs["bentoml"])
                runs = [
                    _load(procs[server], server, bodies[server], connections, seconds, cpus=cpus)
                    for _ in range(repeat if connections == JUDGED else 1)
                ]
                median = sorted(runs, key=lambda r: r.requests_per_second)[len(runs) // 2]
                cell = {
                    "server": server,
                    "rows": rows,
                    **median.as_dict(),
                    "runs_requests_per_second": [round(r.requests_per_second, 1) for r in runs],
                    "drift_checks": _drift_checks(procs["bentoml"]) - checks_before,
                }
                cells.append(cell)
                print(
                    f"  {server:8} {connections:>2} connections {rows:>2} rows: "
                    f"{median.requests_per_second:8.1f} req/s  p99 {median.p99_ms:6.2f} ms  "
                    f"max {median.max_ms:7.2f} ms  errors {median.errors}",
                    flush=True,
                )
    return cells


def summarize(cells: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(c["server"], c["connections"], c["rows"]): c for c in cells}
    ours, floor, mlflow = (by[(s, JUDGED, 1)] for s in SERVERS)
    wide = by[("bentoml", JUDGED, 64)]
    figures = {
        "of_baseline": ours["requests_per_second"] / max(floor["requests_per_second"], 1e-9),
        "of_mlflow": ours["requests_per_second"] / max(mlflow["requests_per_second"], 1e-9),
        "p99_ms": ours["p99_ms"],
        "max_ms": ours["max_ms"],
        "rows_per_second": wide["requests_per_second"] * 64,
    }
    met = {
        name: (
            value >= TARGETS[name]
            if name in ("of_baseline", "of_mlflow", "rows_per_second")
            else value <= TARGETS[name]
        )
        for name, value in figures.items()
    }
    met["no_errors"] = ours["errors"] == 0 and wide["errors"] == 0
    return {"figures": {k: round(v, 3) for k, v in figures.items()}, "targets": TARGETS, "met": met}


def table(cells: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    floor = {(c["connections"], c["rows"]): c["requests_per_second"] for c in cells if c["server"] == "baseline"}
    lines = [
        f"{'server':8} {'conns':>5} {'rows':>4} {'requests':>9} {'errors':>6} {'req/s':>9} {'rows/s':>10} "
        f"{'of base':>7} {'p50 ms':>7} {'p99 ms':>7} {'p99.9':>7} {'max ms':>7} {'drift':>5}"
    ]
    for c in sorted(cells, key=lambda c: (c["rows"], c["connections"], SERVERS.index(c["server"]))):
        share = c["requests_per_second"] / max(floor[(c["connections"], c["rows"])], 1e-9)
        lines.append(
            f"{c['server']:8} {c['connections']:>5} {c['rows']:>4} {c['requests']:>9} {c['errors']:>6} "
            f"{c['requests_per_second']:>9.1f} {c['requests_per_second'] * c['rows']:>10.0f} {share:>6.0%} "
            f"{c['p50_ms']:>7.2f} {c['p99_ms']:>7.2f} {c['p999_ms']:>7.2f} {c['max_ms']:>7.2f} {c['drift_checks']:>5}"
        )
    f, t, met = summary["figures"], summary["targets"], summary["met"]
    verdict = {True: "met", False: "NOT met"}
    lines += [
        f"targets, {JUDGED} connections (median of the runs):",
        f"  1-row req/s vs baseline  {f['of_baseline']:.0%} (>= {t['of_baseline']:.0%}): {verdict[met['of_baseline']]}",
        f"  1-row req/s vs mlflow    {f['of_mlflow']:.1f}x (>= {t['of_mlflow']:g}x): {verdict[met['of_mlflow']]}",
        f"  1-row p99                {f['p99_ms']:.2f} ms (<= {t['p99_ms']:g}): {verdict[met['p99_ms']]}",
        f"  1-row slowest            {f['max_ms']:.2f} ms (<= {t['max_ms']:g}): {verdict[met['max_ms']]}",
        f"  64-row rows/s            {f['rows_per_second']:,.0f} (>= {t['rows_per_second']:,}): "
        f"{verdict[met['rows_per_second']]}",
        f"  errors                   {'none' if met['no_errors'] else 'SOME (see the table)'}",
    ]
    return "\n".join(lines)


def _worker_pid(proc: Proc) -> int:
    import psutil  # noqa: PLC0415 -- BentoML's own dependency

    for child in psutil.Process(proc.pid).children(recursive=True):
        if "_bentoml_impl.worker.service" in " ".join(child.cmdline()):
            return int(child.pid)
    raise SystemExit("no BentoML worker process found under the serving process")


def profile(proc: Proc, body: bytes, *, seconds: float, cpus: str | None, output: Path) -> list[str]:
    """Sample the serving worker with py-spy under load; the top frames by share of the event loop."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed: `uv sync` installs it (a dev dependency)")
    worker = _worker_pid(proc)
    # The load runs beside the sampler (wrk is a subprocess: the thread only waits for it).
    load = threading.Thread(
        target=_load, args=(proc, "bentoml", body, JUDGED, seconds + 4), kwargs={"cpus": cpus}, daemon=True
    )
    load.start()
    try:
        time.sleep(2)
        command = [spy, "record", "--pid", str(worker), "--duration", f"{seconds:g}", "--rate", "200"]
        subprocess.run(
            [*command, "--format", "raw", "--output", str(output)],
            check=True,
            capture_output=True,
            timeout=seconds + 60,
        )
    finally:
        load.join(timeout=seconds + 90)
    return top_frames(output.read_text())


def top_frames(raw: str, limit: int = 10) -> list[str]:
    """Where the event loop's time goes, from py-spy's collapsed stacks: the functions with the most
    samples inside them (the layers every request passes through, above 70 %, left out) and the
    functions with the most samples of their own."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if "run_forever" not in stack and "Runner.run" not in stack:
            continue  # other threads (model loader, drift check, metrics flush) sleep most of the time
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    share = {frame: n / max(total, 1) for frame, n in inclusive.items()}
    inside = sorted((f for f in share if share[f] < 0.7), key=lambda f: -share[f])[:limit]
    return [f"{100 * share[f]:5.1f} % in   {f}" for f in inside] + [
        f"{100 * n / max(total, 1):5.1f} % self {f}" for f, n in own.most_common(limit)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit per cell (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help=f"runs of each {JUDGED}-connection cell (default 3)")
    parser.add_argument("--drift-seconds", type=float, default=10.0, help="drift check interval (default 10)")
    parser.add_argument("--profile", action="store_true", help="also sample the serving worker with py-spy")
    parser.add_argument("--output", type=Path, help="JSON file (default .mlops/bench/serving.json)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600 or not 1 <= args.repeat <= 9 or not 1 <= args.drift_seconds <= 3600:
        parser.error("--seconds must be in [1, 600], --repeat in 1..9, --drift-seconds in 1..3600")
    find_wrk(install=True)
    root = find_root()
    output = args.output or root / ".mlops" / "bench" / "serving.json"
    pin, cpus = cpus_for_servers()
    print(
        f"{os.cpu_count()} CPUs; " + (f"servers on CPU 0, wrk on CPUs {cpus}" if cpus else "no CPU pinning"),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        home = Path(tmp)
        tracking_uri = scratch_registry(home)
        _write_weights(tracking_uri, home / "weights.json")
        started = time.monotonic()
        procs = start_servers(root, home, tracking_uri, args.drift_seconds, pin)
        hot: list[str] = []
        try:
            wait_http(procs["bentoml"], "/readyz", timeout=120)
            wait_http(procs["mlflow"], "/ping", timeout=120)
            wait_http(procs["baseline"], "/", timeout=60)
            answers = _predictions(procs)
            print(
                f"servers ready in {time.monotonic() - started:.0f} s; same prediction: class {answers['bentoml'][0]}",
                flush=True,
            )
            cells = measure(procs, seconds=args.seconds, repeat=args.repeat, cpus=cpus)
            if args.profile:
                raw = output.with_name(output.stem + "-profile.txt")
                raw.parent.mkdir(parents=True, exist_ok=True)
                hot = profile(procs["bentoml"], _bodies(1)["bentoml"], seconds=10, cpus=cpus, output=raw)
        finally:
            for proc in procs.values():
                stop(proc)
    summary = summarize(cells)
    report = {"cpu_count": os.cpu_count(), "pinned": cpus is not None, "cells": cells, **summary, "profile": hot}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(cells, summary))
    if hot:
        print("where a 1-row request's time goes (py-spy, share of the event loop's samples):")
        print("\n".join(f"  {line}" for line in hot))
    print(f"JSON: {output}")
    return 0 if all(summary["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())

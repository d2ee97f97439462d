"""Benchmark what bad requests cost the good ones: the latency of a 1-row request, alone and while the
largest bad requests the serving app accepts to read are in flight.

    uv run python -m pipelines.bench.serving_input [--seconds 10] [--output FILE]

It trains the reference model into a scratch registry and starts the serving app as the Deployment runs
it (one worker, on CPU 0; the clients run on the other CPUs). One client then sends 1-row requests one
after the other for `--seconds` seconds, first alone, then while another client (a process of its own)
keeps sending bad requests, one in flight at a time, one kind after the other:
- `parsed`: the most work a bad body can cause, a body just under the row limit and the 1 MiB body limit
  whose last value is a string (parsed and validated whole, then 400);
- `oversized`: a 50 MB chunked body (413 once 1 MiB has arrived, the rest never read);
- `too many rows`: 1 MiB of rows (413 from counting, before parsing);
- `slow`: a body that trickles in a byte every 0.1 s (408 after the body deadline).
It prints p50, p99 and the slowest good request for each, and the answers the bad ones got.
The target (issue: faults lose nothing): a good request is delayed by no more than a few ms.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from apps.serving.smoke import sample_row
from infra.config import find_root
from pipelines.bench.serving import cpus_for_servers, scratch_registry, start_servers
from pipelines.common.procs import stop, wait_http

MiB = 1 << 20
ABUSERS = 1  # bad requests in flight at a time (each sent as soon as the one before was answered)


def _parsed_body() -> bytes:
    """1,000 rows of 30 numbers, padded towards 1 MiB, the very last value a string: valid until its end."""
    row = [0.123456789012345] * 30
    body = json.dumps({"instances": [row] * 1000})
    return (body[: -len("0.123456789012345]]}")] + '"17.99"]]}').encode()


def _too_many_rows() -> bytes:
    return json.dumps({"instances": [[1]] * (MiB // 6)}).encode()[: MiB - 16]


def _oversized() -> Iterator[bytes]:
    chunk = b"[" + b"1," * 32767 + b"1]"
    for _ in range(50 * MiB // len(chunk)):
        yield chunk


def _slow(url: str, stop_at: float) -> str:
    """Send headers and then one byte every 0.1 s; the status the server answers with."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        sock.settimeout(0.1)
        while time.monotonic() < stop_at + 15:
            try:
                answer = sock.recv(200)
                return answer.split(b" ")[1].decode() if answer else "closed"
            except TimeoutError:
                sock.sendall(b" ")
            except OSError:
                return "closed"
    return "no answer"


def _abuse(url: str, kind: str, until: float, answers: Any) -> None:
    """Send bad requests of one kind until `until`; runs in a process of its own (not this one's GIL)."""
    made = {"parsed": _parsed_body, "too many rows": _too_many_rows}
    body = made[kind]() if kind in made else None
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < until:
            if kind == "slow":
                seen[_slow(url, until)] += 1
                continue
            try:
                content = body if body is not None else _oversized()
                response = client.post(url + "/predict", content=content, headers={"content-type": "application/json"})
                seen[str(response.status_code)] += 1
            except httpx.HTTPError as exc:  # the server may close a body it stopped reading
                seen[type(exc).__name__] += 1
    answers.put(dict(seen))


def _good_latencies(url: str, seconds: float) -> list[float]:
    body = json.dumps({"instances": [sample_row()]}).encode()
    latencies = []
    with httpx.Client(timeout=10, headers={"content-type": "application/json"}) as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.post(url + "/predict", content=body)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"a good request got HTTP {response.status_code}: {response.text[:200]}")
    return latencies


def measure(url: str, seconds: float) -> list[dict[str, Any]]:
    rows = []
    for kind in ("alone", "parsed", "oversized", "too many rows", "slow"):
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        until = time.monotonic() + seconds
        abusers = [
            context.Process(target=_abuse, args=(url, kind, until, queue), daemon=True)
            for _ in range(0 if kind == "alone" else ABUSERS)
        ]
        for process in abusers:
            process.start()
        latencies = sorted(_good_latencies(url, seconds))
        answers: Counter[str] = Counter()
        for _ in abusers:
            answers.update(queue.get(timeout=60))
        for process in abusers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        rows.append(
            {
                "bad requests": kind,
                "good requests": len(latencies),
                "p50_ms": round(statistics.median(latencies), 2),
                "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
                "max_ms": round(latencies[-1], 2),
                "bad answers": dict(answers),
            }
        )
        print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    answers = ", ".join(f"{n}x {status}" for status, n in sorted(row["bad answers"].items())) or "-"
    return (
        f"{row['bad requests']:<14} {row['good requests']:>6} {row['p50_ms']:>7.2f} {row['p99_ms']:>7.2f} "
        f"{row['max_ms']:>7.2f}  {answers}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (default 10)")
    parser.add_argument("--output", type=Path, help="JSON file (default .mlops/bench/serving-input.json)")
    args = parser.parse_args(argv)
    if not 2 <= args.seconds <= 600:
        parser.error("--seconds must be in [2, 600]")
    root = find_root()
    output = args.output or root / ".mlops" / "bench" / "serving-input.json"
    pin, cpus = cpus_for_servers()
    if cpus:
        os.sched_setaffinity(0, {int(c) for c in range(1, os.cpu_count() or 2)})
    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp:
        home = Path(tmp)
        procs = start_servers(root, home, scratch_registry(home), 60, pin, servers=("bentoml",))
        try:
            wait_http(procs["bentoml"], "/readyz", timeout=120)
            print(
                f"{os.cpu_count()} CPUs, server on CPU 0; 1-row requests one at a time, {args.seconds:g} s per row\n"
                f"{'bad requests':<14} {'good':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  answers to the bad ones",
                flush=True,
            )
            rows = measure(procs["bentoml"].url, args.seconds)
        finally:
            for proc in procs.values():
                stop(proc)
    alone = rows[0]
    worst = max(rows[1:], key=lambda r: r["p99_ms"])
    delay = worst["p99_ms"] - alone["p99_ms"]
    slowest = max(r["max_ms"] for r in rows)
    print(
        f"worst: {worst['bad requests']} bad requests add {delay:.2f} ms to a good request's p99 "
        f"({alone['p99_ms']:.2f} → {worst['p99_ms']:.2f} ms); slowest good request {slowest:.1f} ms"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=2) + "\n")
    print(f"JSON: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load a loopback HTTP server with `wrk` (a C load generator, from Debian) and read its full result.

A Python client on the same cores as the server caps what it can measure; wrk spends a few µs per
request. Closed loop: `connections` connections each send the next request when the last answer
arrives. A run lasts `seconds` (wrk has no request-count stop: its main thread sleeps the whole
duration), each request has its own timeout, and the process a hard deadline, so a run always ends.
The Lua script below turns wrk's summary into one JSON line: requests, errors by kind (non-2xx
answers included), and latency percentiles to p99.9 and the maximum.

Only loopback URLs are accepted: this is for benchmarking a server on this machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import EnvironmentProblem

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MARKER = "WRK_RESULT "
INSTALL_HINT = "install it: `sudo apt-get install wrk` (Debian/Ubuntu), `brew install wrk` (macOS)"

# Every wrk thread runs this script; `done` prints the summary (latencies are in microseconds). No
# `response` callback: defining one makes wrk hand every answer to Lua.
SCRIPT = """
local body_file = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d, "max": %d, "mean": %.1f}\\n',
    os.getenv("WRK_MARKER"), summary.requests, summary.duration, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class LoadResult:
    connections: int
    requests: int
    errors: int  # non-2xx answers, timeouts and socket errors
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    mean_ms: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        return {**asdict(self), "requests_per_second": round(self.requests_per_second, 1)}


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"url: {url!r} is not a loopback address; the load generator only targets this machine")


def find_wrk(install: bool = False) -> str:
    """The wrk executable; with `install`, as root on Debian, installs the package first (the
    benchmark's set-up). Otherwise a clear EnvironmentProblem, never a silent fallback."""
    found = shutil.which("wrk")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk from the Debian archive (apt-get install wrk)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install_wrk = ["apt-get", "install", "-y", "-q", "wrk"]
        done = subprocess.run(install_wrk, check=False, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:  # the package lists may be missing or stale: refresh them once
            subprocess.run(["apt-get", "update", "-q"], check=False, env=env, capture_output=True, timeout=600)
            done = subprocess.run(install_wrk, check=False, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode == 0 and shutil.which("wrk"):
            return str(shutil.which("wrk"))
        raise EnvironmentProblem("apt-get could not install wrk", hint=done.stderr[-800:] or INSTALL_HINT)
    raise EnvironmentProblem("wrk (the load generator) is not on PATH", hint=INSTALL_HINT)


def run_wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    request_timeout: float = 10.0,
    cpus: str | None = None,
    wrk: str | None = None,
) -> LoadResult:
    """POST `body` (JSON) to `url` over `connections` connections for `seconds` (whole seconds).
    `cpus` (e.g. "1") pins wrk to those CPUs with taskset, away from the server's."""
    check_loopback(url)
    if not 1 <= connections <= 10_000 or not 1 <= seconds <= 3600:
        raise ValueError("connections must be in 1..10000 and seconds in [1, 3600]")
    threads = min(connections, 4, os.cpu_count() or 1)
    command = [wrk or find_wrk()]
    if cpus is not None:
        command = [shutil.which("taskset") or "taskset", "-c", cpus, *command]
    with tempfile.TemporaryDirectory(prefix="wrk-") as tmp:
        script, body_file = Path(tmp) / "post.lua", Path(tmp) / "body.json"
        script.write_text(SCRIPT)
        body_file.write_bytes(body)
        env = {
            **os.environ,
            "WRK_BODY_FILE": str(body_file),
            "WRK_MARKER": MARKER,
        }
        command += [
            f"-t{threads}",
            f"-c{connections}",
            f"-d{math.ceil(seconds)}s",
            f"--timeout={max(1, math.ceil(request_timeout))}s",
            "-s",
            str(script),
            url,
        ]
        done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        raise EnvironmentProblem(
            f"wrk failed (exit {done.returncode}) against {url}", hint=(done.stderr or done.stdout)[-800:]
        )
    raw = json.loads(lines[-1][len(MARKER) :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    elapsed = raw["duration_us"] / 1e6
    return LoadResult(
        connections=connections,
        requests=raw["requests"],
        errors=errors,
        seconds=round(elapsed, 3),
        p50_ms=raw["p50"] / 1000,
        p90_ms=raw["p90"] / 1000,
        p99_ms=raw["p99"] / 1000,
        p999_ms=raw["p999"] / 1000,
        max_ms=raw["max"] / 1000,
        mean_ms=round(raw["mean"] / 1000, 3),
    )

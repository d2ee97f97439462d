"""A bounded HTTP load generator for loopback servers (used by `pipelines.bench.serving`).

Closed loop: `concurrency` clients each send a request, wait for the answer, send the next. A run
stops at `max_requests` or after `max_seconds`, whichever comes first, and every request has its own
timeout, so a run always ends. Only loopback URLs are accepted: this is for benchmarking a server on
the same machine, not for load-testing someone else's.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    stopped_by: str  # "count" or "time"
    latencies_ms: list[float] = field(repr=False)
    first_error: str | None = None

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the successful requests' latencies (NaN if none succeeded)."""
        if not self.latencies_ms:
            return math.nan
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def as_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "stopped_by": self.stopped_by,
            "requests_per_second": round(self.throughput, 1),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "first_error": self.first_error,
        }


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"url: {url!r} is not a loopback address; the load generator only targets this machine")


def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    request_timeout: float = 10.0,
) -> LoadResult:
    """POST `body` (JSON) to `url` from `concurrency` clients until a bound is reached."""
    check_loopback(url)
    if concurrency < 1 or max_requests < 1 or not 0 < max_seconds <= 3600:
        raise ValueError("concurrency and max_requests must be >= 1 and max_seconds in (0, 3600]")
    # A private loop: asyncio.run() would leave the thread without a current loop, which code that
    # calls get_event_loop() afterwards (Pulumi's mocks, in the same test process) does not expect.
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(
            _run(
                url,
                body,
                concurrency=concurrency,
                max_requests=max_requests,
                max_seconds=max_seconds,
                request_timeout=request_timeout,
            )
        )
    finally:
        loop.close()


async def _run(
    url: str, body: bytes, *, concurrency: int, max_requests: int, max_seconds: float, request_timeout: float
) -> LoadResult:
    import aiohttp  # noqa: PLC0415 -- a lean async client: the load generator shares the CPU with the server

    latencies: list[float] = []
    state = {"issued": 0, "errors": 0}
    first_error: list[str] = []
    headers = {"content-type": "application/json"}
    started = time.perf_counter()
    deadline = started + max_seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while state["issued"] < max_requests and time.perf_counter() < deadline:
            state["issued"] += 1
            sent = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            if ok:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                state["errors"] += 1
                if not first_error:
                    first_error.append(problem)

    timeout = aiohttp.ClientTimeout(total=request_timeout)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return LoadResult(
        concurrency=concurrency,
        requests=state["issued"],
        errors=state["errors"],
        seconds=elapsed,
        stopped_by="count" if state["issued"] >= max_requests else "time",
        latencies_ms=latencies,
        first_error=first_error[0] if first_error else None,
    )

"""A real Prometheus on loopback for the tests that read evidence through its HTTP API.

The binary comes from PATH, or from `.tools/prometheus/` where it is unpacked from Debian's package
(`apt-get download prometheus`, no root needed) the first time; where neither works the test fails
and says how to install it, never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from pipelines.common.procs import LOOPBACK, free_port, spawn, stop, wait_http
from tests.conftest import ROOT

TOOLS = ROOT / ".tools" / "prometheus"
UNPACKED = TOOLS / "usr" / "bin" / "prometheus"
HINT = "install Prometheus (`sudo apt-get install prometheus`, `brew install prometheus`) or put it on PATH"


def prometheus_binary() -> Path:
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    if UNPACKED.is_file():
        return UNPACKED
    if shutil.which("apt-get") and shutil.which("dpkg"):
        TOOLS.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=TOOLS) as tmp:
            debs = _download(Path(tmp))
            if not debs and os.geteuid() == 0:  # no package lists yet (a fresh machine): as root, fetch them
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600, check=False)
                debs = _download(Path(tmp))
            if debs:
                subprocess.run(["dpkg", "-x", str(debs[0]), str(TOOLS)], check=True, timeout=120)
    if UNPACKED.is_file():
        return UNPACKED
    raise AssertionError(f"no prometheus binary: {HINT}")


def _download(directory: Path) -> list[Path]:
    subprocess.run(["apt-get", "download", "prometheus"], cwd=directory, capture_output=True, timeout=300, check=False)
    return list(directory.glob("prometheus_*.deb"))


@contextmanager
def prometheus(targets: list[str], home: Path, interval: str = "1s") -> Iterator[str]:
    """Prometheus scraping `targets` (host:port) every `interval`; yields its URL, stops it afterwards."""
    config = home / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        "scrape_configs:\n  - job_name: serving\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
    )
    port = free_port()
    command = [
        str(prometheus_binary()),
        f"--config.file={config}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    url = f"http://{LOOPBACK}:{port}"
    proc = spawn("prometheus", command, port=port, log=home / "prometheus.log", url=url, env={}, cwd=home)
    try:
        wait_http(proc, "/-/ready", timeout=60)
        yield proc.url
    finally:
        stop(proc)


def wait_scraped(url: str, query: str, value: float, timeout: float = 30) -> None:
    """Until `query` answers `value` (the scrapes have caught up)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        result = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=10).json()["data"]["result"]
        last = float(result[0]["value"][1]) if result else None
        if last == value:
            return
        time.sleep(0.25)
    raise AssertionError(f"Prometheus at {url} answers {query} = {last}, not {value}, after {timeout:.0f} s")


@contextmanager
def recorded_shadow(
    home: Path, environment: str, model_name: str, champion: int, candidate: int, *, requests: int, agree: float
) -> Iterator[str]:
    """A Prometheus that has scraped `requests` shadow-scored requests of the pair (one row each, a share
    `agree` of them agreeing, 1 ms each), exposed by this process as serving exposes them; yields its URL."""
    import prometheus_client

    from apps.serving.monitoring import Metrics

    bound = Metrics.get().bound(model_name, str(champion), environment)
    port = free_port()
    server, thread = prometheus_client.start_http_server(port, addr=LOOPBACK)
    try:
        bound.shadow_outcome(str(candidate), "dropped")  # the pair's series exist before the window's traffic
        bound.shadowed(str(candidate), 1, 1, np.zeros(1), 0.001)
        bound.shadowed(str(candidate), 0, 1, np.zeros(1), 0.001)
        Metrics.get().flush()
        with prometheus([f"{LOOPBACK}:{port}"], home) as url:
            selector = "{" + f'environment="{environment}",model_name="{model_name}",outcome="scored"' + "}"
            wait_scraped(url, f"sum(model_shadow_requests_total{selector})", 2)
            agreeing = round(requests * agree)
            for index in range(requests):
                bound.shadowed(str(candidate), int(index < agreeing), 1, np.zeros(1), 0.001)
            Metrics.get().flush()
            wait_scraped(url, f"sum(model_shadow_requests_total{selector})", requests + 2)
            yield url
    finally:
        server.shutdown()
        thread.join(timeout=10)

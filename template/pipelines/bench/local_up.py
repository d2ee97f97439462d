"""Benchmark `mlops local up`: cold start to prod model serving, a second `up`, and peak memory.

    uv run python -m pipelines.bench.local_up [--json reports/bench-local-up.json]

Runs the real CLI with its own state directory (MLOPS_LOCAL_HOME), so a running local environment is
left alone. Peak RSS is sampled every 0.2 s over every process the run started (the CLI and the
servers' process groups). Bounded: each `up` must finish within 300 s; everything is stopped after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pipelines.common.procs import Proc, group_rss_bytes, rss_bytes

MLOPS = str(Path(sys.executable).parent / "mlops")


def _pgid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


class RssSampler(threading.Thread):
    """Samples the summed RSS of the CLI's process group and of the servers' process groups."""

    def __init__(self, state_file: Path, cli_pid: int) -> None:
        super().__init__(daemon=True)
        self.state_file, self.cli_pid = state_file, cli_pid
        self.peak_total = self.peak_servers = 0
        self.done = threading.Event()

    def _server_processes(self) -> list[int]:
        """Every process the servers' spawns started (BentoML's worker runs in a session of its own)."""
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return []
        return [pid for value in state.values() if isinstance(value, dict) for pid in Proc.from_state(value).members()]

    def run(self) -> None:
        cli_group = _pgid(self.cli_pid)
        while not self.done.is_set():
            servers = rss_bytes(self._server_processes())
            cli = group_rss_bytes(cli_group) if cli_group else 0
            self.peak_servers = max(self.peak_servers, servers)
            self.peak_total = max(self.peak_total, servers + cli)
            self.done.wait(0.2)


def timed_up(home: Path, env: dict[str, str]) -> tuple[float, RssSampler, int]:
    started = time.monotonic()
    process = subprocess.Popen(
        [MLOPS, "local", "up", "--format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    sampler = RssSampler(home / "state.json", process.pid)
    sampler.start()
    try:
        output, _ = process.communicate(timeout=300)
    finally:
        sampler.done.set()
        sampler.join()
    elapsed = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"mlops local up failed with exit {process.returncode}; logs in {home / 'logs'}")
    return elapsed, sampler, int(json.loads(output)["served_version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    home = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    env = {**os.environ, "MLOPS_LOCAL_HOME": str(home)}
    try:
        cold, cold_rss, version = timed_up(home, env)
        warm, _, _ = timed_up(home, env)
    finally:
        subprocess.run([MLOPS, "local", "down", "--purge"], env=env, capture_output=True, timeout=120, check=False)
        shutil.rmtree(home, ignore_errors=True)
    figures = {
        "cold_up_seconds": round(cold, 1),
        "second_up_seconds": round(warm, 1),
        "served_version": version,
        "peak_rss_mb_servers": round(cold_rss.peak_servers / 2**20),
        "peak_rss_mb_total": round(cold_rss.peak_total / 2**20),
        "cpus": os.cpu_count(),
    }
    print("| measure | value | target |\n| --- | --- | --- |")
    print(f"| cold `mlops local up` → prod model serving | {figures['cold_up_seconds']} s | ≤ 60 s |")
    print(f"| second `mlops local up` while running | {figures['second_up_seconds']} s | ≤ 5 s |")
    print(f"| peak RSS, servers | {figures['peak_rss_mb_servers']} MB | |")
    print(f"| peak RSS, everything started (servers + CLI) | {figures['peak_rss_mb_total']} MB | ≤ 1536 MB |")
    print(f"({figures['cpus']} CPUs; prod served model version {version})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

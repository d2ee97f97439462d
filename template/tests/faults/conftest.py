"""Fault injection: kill servers and commands at chosen points, then check that nothing was lost.

Every test here is an integration test (it starts real servers). The points where a command is killed
are the progress lines it prints (no hook in the code under test); where a choice is random, it is
seeded (`FAULT_SEED`, default 18), so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.registry import champion, client_for, registered_name, verify_artifacts
from pipelines.common.procs import SPAWN_VARIABLE, pid_alive
from pipelines.local.environment import LocalEnvironment
from tests.conftest import ROOT

MLOPS = str(Path(sys.executable).parent / "mlops")
SEED = int(os.environ.get("FAULT_SEED", "18"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "faults":
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(SEED)


@pytest.fixture(scope="module")
def fault_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A state directory of its own (the session's local environment is left alone), brought up once per
    module and stopped at the end, whatever the tests did to it."""
    home = tmp_path_factory.mktemp("faults")
    saved = dict(os.environ)
    try:
        yield home
    finally:
        environment(home).down(purge=True)
        os.environ.clear()
        os.environ.update(saved)


def environment(home: Path) -> LocalEnvironment:
    from infra.config import load_stack

    return LocalEnvironment(ROOT, load_stack(ROOT, "local").serving.model.name, home=home)


def cli_env(home: Path) -> dict[str, str]:
    # COLUMNS: messages are matched whole, not as the console wraps them at 80 columns
    return {**os.environ, "MLOPS_LOCAL_HOME": str(home), "MLOPS_ROOT": str(ROOT), "COLUMNS": "250"}


def run_cli(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], env=cli_env(home), capture_output=True, text=True, timeout=timeout, check=False
    )


def kill_cli_at(home: Path, args: list[str], line: str, signum: int = signal.SIGKILL, timeout: float = 300) -> str:
    """Run `mlops ARGS` and send `signum` to it (its own process group: the CLI, not the servers it
    started, which live in sessions of their own) as soon as it prints a line containing `line`.
    Returns what it printed. Fails if the line never comes."""
    process = subprocess.Popen(
        [MLOPS, *args],
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert process.stdout is not None
        for output in process.stdout:
            seen.append(output)
            if line in output:
                os.killpg(process.pid, signum)
                break
            assert time.monotonic() < deadline, f"no {line!r} within {timeout}s"
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert any(line in s for s in seen), f"`mlops {' '.join(args)}` never printed {line!r}:\n{''.join(seen)}"
    return "".join(seen)


def processes_of(home: Path) -> list[int]:
    """Every live process a server of `home` started, found by what its environment carries (the spawn
    token, and the state directory the servers are started with), whether `home`'s state file still
    records it or not (a killed `up` may have started it)."""
    mark = f"MLOPS_LOCAL_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        spawned = any(item.startswith(f"{SPAWN_VARIABLE}=".encode()) for item in environ)
        if spawned and mark in environ and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def assert_nothing_left(home: Path) -> None:
    deadline = time.monotonic() + 15
    while (left := processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of {home} left running: {left}"


def assert_champions_intact(env: LocalEnvironment) -> dict[str, int | None]:
    """Every environment's champion is there and its artifacts hash to their record."""
    uri = env.tracking_uri()
    env.registries()  # this process's S3 settings point at the environment's store
    served = {}
    for name in ("dev", "staging", "prod"):
        info = champion(client_for(uri), registered_name(name, env.model))
        if info is not None:
            verify_artifacts(uri, info)
        served[name] = info.model_version if info else None
    return served


def assert_status_truthful(env: LocalEnvironment) -> None:
    """`status` says `running` exactly for the servers that are the recorded process and answer."""
    for row in env.status():
        proc = env.state()[row["service"]]
        if row["state"] == "running":
            assert proc.alive(), row
        if not proc.alive():
            assert row["state"] in {"stopped", "leaked", "not ours"}, row
        if row["state"] == "leaked":
            assert proc.members(), row

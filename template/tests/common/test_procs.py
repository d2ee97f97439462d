"""Process and port handling for the local servers: clear errors, bounded waits, whole process groups stopped."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import EXIT_ENVIRONMENT, EXIT_OK, EnvironmentProblem
from pipelines.cli import main
from pipelines.common.procs import LOOPBACK, choose_port, free_port, pid_alive, port_in_use, spawn, stop, wait_http


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


def test_free_port_is_free() -> None:
    assert not port_in_use(free_port())


def test_taken_port_is_named_with_a_hint(taken_port: int) -> None:
    with pytest.raises(
        EnvironmentProblem, match=f"tracking server port {taken_port} on 127.0.0.1 is already taken"
    ) as raised:
        choose_port(taken_port, "tracking server")
    assert raised.value.exit_code == 3 and "pass 0 to pick a free port" in (raised.value.hint or "")


def test_privileged_or_invalid_port_is_refused() -> None:
    with pytest.raises(EnvironmentProblem, match="outside 1024-65535"):
        choose_port(80, "serving")


def test_stop_ends_the_whole_process_group(tmp_path: Path) -> None:
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    proc = spawn(
        "sleeper",
        [sys.executable, "-c", script],
        port=0,
        log=tmp_path / "log",
        url="http://127.0.0.1:1",
        env={},
        cwd=tmp_path,
    )
    time.sleep(0.5)
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == proc.pid]
    assert children, "the child process started"
    assert stop(proc, grace=5)
    assert not pid_alive(proc.pid)
    assert all(not pid_alive(int(c.name)) for c in children), "children in the group are stopped too"
    assert not stop(proc), "stopping a stopped process reports that nothing ran"


def test_wait_http_is_bounded(tmp_path: Path) -> None:
    proc = spawn(
        "silent",
        [sys.executable, "-c", "import time; time.sleep(30)"],
        port=free_port(),
        log=tmp_path / "log",
        url=f"http://{LOOPBACK}:{free_port()}",
        env={},
        cwd=tmp_path,
    )
    try:
        started = time.monotonic()
        with pytest.raises(EnvironmentProblem, match=r"did not answer /health within 1s"):
            wait_http(proc, "/health", timeout=1)
        assert time.monotonic() - started < 5
    finally:
        stop(proc)


def test_wait_http_reports_a_crashed_server_with_its_log(tmp_path: Path) -> None:
    proc = spawn(
        "crasher",
        [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
        port=0,
        log=tmp_path / "log",
        url="http://127.0.0.1:1",
        env={},
        cwd=tmp_path,
    )
    with pytest.raises(EnvironmentProblem, match="crasher exited while starting") as raised:
        wait_http(proc, "/health", timeout=30)
    assert "boom: bad config" in (raised.value.hint or "")


def test_local_commands_when_nothing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "state"))
    assert main(["local", "down"]) == EXIT_OK
    assert "Nothing was running." in capsys.readouterr().out
    assert main(["local", "status"]) == EXIT_OK
    assert "not running" in capsys.readouterr().out
    assert main(["local", "promote", "diagnosis", "--version", "1", "--to", "staging"]) == EXIT_ENVIRONMENT
    assert "the local MLflow server is not running" in capsys.readouterr().err
    assert not (tmp_path / "state").exists(), "nothing was created"


def test_up_with_a_taken_port_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(tmp_path / "state"))
    assert main(["local", "up", "--serving-port", str(taken_port)]) == EXIT_ENVIRONMENT
    assert f"serving port {taken_port} on 127.0.0.1 is already taken" in capsys.readouterr().err
    assert not (tmp_path / "state" / "state.json").exists(), "no server was started"


def _ppid(path: Path) -> int | None:
    try:
        return int((path / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_a_server_stopped_before_it_shows_its_command_is_still_stopped(tmp_path: Path) -> None:
    """Between fork and exec a child shows its parent's command line and environment (no token yet):
    it is still recognised by its start time, waited for and stopped, never left running."""
    from pipelines.common.procs import Proc, pid_alive, process_identity, stop

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        started = process_identity(child.pid)
        assert started is not None
        # A record as `spawn` makes it, but with a command line and token the process does not show.
        proc = Proc(
            name="early",
            pid=child.pid,
            port=0,
            log=str(tmp_path / "log"),
            url="",
            started=started[0],
            command=("something", "else"),
            token="not-in-its-environment",
        )
        assert not proc.alive() and proc.same_process()
        assert stop(proc, grace=5) is True
        child.wait(timeout=10)
        assert not pid_alive(child.pid)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

"""Local server processes: start each in its own process group, wait for it, stop the whole group.

State lives in files (pid, port, log) so that a later `mlops` invocation can find and stop what an
earlier one started. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from core.errors import EnvironmentProblem

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Proc:
    """A server started by `mlops`: enough to check it and to stop its process group."""

    name: str
    pid: int
    port: int
    log: str
    url: str

    def alive(self) -> bool:
        return pid_alive(self.pid)


def serving_command(bin_dir: Path, port: int) -> list[str]:
    """`bentoml serve` of the serving app on loopback (the local environment and the benchmark)."""
    app = "apps.serving.service:ModelService"
    return [str(bin_dir / "bentoml"), "serve", app, "--host", LOOPBACK, "--port", str(port)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def choose_port(requested: int, what: str) -> int:
    """`requested` if free (0 picks a free one); a taken port is an environment problem, said clearly."""
    if requested == 0:
        return free_port()
    if not 1024 <= requested <= 65535:
        raise EnvironmentProblem(f"{what} port {requested} is outside 1024-65535")
    if port_in_use(requested):
        raise EnvironmentProblem(
            f"{what} port {requested} on {LOOPBACK} is already taken by another process",
            hint=f"free it (`ss -ltnp 'sport = :{requested}'` shows who has it) or pass 0 to pick a free port",
        )
    return requested


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is not alive
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def spawn(name: str, cmd: Sequence[str], *, port: int, log: Path, url: str, env: Mapping[str, str], cwd: Path) -> Proc:
    """Start `cmd` in a new session (its own process group), output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(cmd)}\n".encode())
        handle.flush()
        process = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Proc(name=name, pid=process.pid, port=port, log=str(log), url=url)


def wait_http(proc: Proc, path: str, timeout: float, ok: Sequence[int] = (200,)) -> None:
    """Poll `proc.url + path` until it answers with an `ok` status; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise EnvironmentProblem(
                f"{proc.name} exited while starting", hint=f"see its log: {proc.log}\n{tail(proc.log)}"
            )
        try:
            response = httpx.get(proc.url + path, timeout=2)
            if response.status_code in ok:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise EnvironmentProblem(
        f"{proc.name} did not answer {path} within {timeout:.0f}s ({last})",
        hint=f"see its log: {proc.log}\n{tail(proc.log)}",
    )


def stop(proc: Proc, grace: float = 10) -> bool:
    """Stop the process group of `proc`: SIGTERM, then SIGKILL after `grace` seconds. True if it was running."""
    if not proc.alive():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(proc.pid, os.WNOHANG)
    return True


def _group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process remains in the group. Reaps the leader if it is our child,
    so that stopping a server this process started does not wait out the grace period on a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return any(
        _pgid_of(int(p.name)) == pgid and pid_alive(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit()
    )


def _pgid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in a process group (for the benchmark and `local status`)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _pgid_of(int(entry.name)) == pgid:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pages = int((entry / "statm").read_text().split()[1])
                total += pages * os.sysconf("SC_PAGE_SIZE")
    return total


def tail(path: str | Path, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def save_state(path: Path, state: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2, default=_encode))
    temporary.replace(path)


def _encode(value: object) -> object:
    if isinstance(value, Proc):
        return asdict(value)
    return str(value)

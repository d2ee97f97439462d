"""Local server processes: start each in its own process group, wait for it, stop the whole group.

State lives in files (pid, port, log) so that a later `mlops` invocation can find and stop what an
earlier one started. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from core.errors import EnvironmentProblem

LOOPBACK = "127.0.0.1"
# In the environment of every process a spawn starts (see `Proc.members`).
SPAWN_VARIABLE = "MLOPS_SPAWN_ID"


@dataclass(frozen=True)
class Proc:
    """A server started by `mlops`: enough to recognise it, check it and stop everything it started.

    `started` (the kernel's start time of the pid, in clock ticks since boot), `command` and `token` are
    recorded at spawn. A pid from a state file is trusted only while its start time and command line
    still match, and only processes whose environment carries `token` (the server and every process it
    started, whatever their process group or session) are ever signalled.
    """

    name: str
    pid: int
    port: int
    log: str
    url: str
    started: int = 0
    command: tuple[str, ...] = ()
    token: str = ""

    @classmethod
    def from_state(cls, raw: Mapping[str, Any]) -> Proc:
        known = {f: raw[f] for f in cls.__dataclass_fields__ if f in raw}
        known["command"] = tuple(known.get("command") or ())
        return cls(**known)

    def alive(self) -> bool:
        """The recorded server process is running (and is still the process that was started)."""
        return pid_alive(self.pid) and self.ours()

    def ours(self) -> bool:
        """The pid is the process `mlops` started: same start time, same command line."""
        if not self.started or not self.command:
            return False  # a state file from an older version, or edited by hand: trust nothing
        found = process_identity(self.pid)
        if found is None or found[0] != self.started:
            return False
        # Between fork and exec a child still shows its parent's command line (seen once, under load).
        return _same_command(found[1], self.command) or found[1] == _own_command()

    def same_process(self) -> bool:
        """The recorded pid is still the process that was started (its start time), whatever it shows as
        its command line: between fork and exec, or during exec, that is its parent's or empty."""
        found = process_identity(self.pid)
        return found is not None and found[0] == self.started and pid_alive(self.pid)

    def members(self) -> list[int]:
        """Every live process this server's spawn started (the server included), found by its token."""
        if not self.token:
            return [self.pid] if self.alive() else []
        return [pid for pid in _pids() if pid_alive(pid) and _has_token(pid, self.token)]

    def state(self, members: Sequence[int] | None = None) -> str:
        """`running` (the server itself), `leaked` (it exited, processes it started did not),
        `not ours` (the pid belongs to another program now) or `stopped`. `members`: what
        `members()` just returned, if the caller has it (each call reads every process's environment)."""
        if self.alive():
            return "running"
        if members if members is not None else self.members():
            return "leaked"
        if pid_alive(self.pid):
            return "not ours"
        return "stopped"


def process_identity(pid: int) -> tuple[int, tuple[str, ...]] | None:
    """(start time in clock ticks since boot, command line) of a live process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    try:
        started = int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
    return started, tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _same_command(found: tuple[str, ...], recorded: tuple[str, ...]) -> bool:
    """The command line the kernel shows is the one recorded, allowing for what exec changes in front of
    it: a script's interpreter (`#!/…/python` puts it first) and a launcher that execs the command
    (`taskset -c 0 …`, up to three words). With the start time equal, this only guards against a
    coincidence."""
    common = 0
    while common < min(len(found), len(recorded)) and found[-1 - common] == recorded[-1 - common]:
        common += 1
    return common == len(recorded) or common >= max(2, len(recorded) - 3)


def _own_command() -> tuple[str, ...]:
    found = process_identity(os.getpid())
    return found[1] if found else ()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _has_token(pid: int, token: str) -> bool:
    try:  # another user's process cannot be read: it is not ours either
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{SPAWN_VARIABLE}={token}".encode() in environ.split(b"\0")


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
    """Start `cmd` in a new session (its own process group), output appended to `log`. Its environment
    carries a token of this spawn, inherited by every process it starts: how `stop` finds them all."""
    log.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    with log.open("ab") as handle:
        handle.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(cmd)}\n".encode())
        handle.flush()
        process = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env={**os.environ, **env, SPAWN_VARIABLE: token},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    identity = process_identity(process.pid)  # the start time is fixed at fork, before the command runs
    if identity is None:
        raise EnvironmentProblem(f"{name} exited at once", hint=f"see its log: {log}\n{tail(log)}")
    return Proc(
        name=name,
        pid=process.pid,
        port=port,
        log=str(log),
        url=url,
        started=identity[0],
        command=tuple(cmd),
        token=token,
    )


def wait_http(proc: Proc, path: str, timeout: float, ok: Sequence[int] = (200,)) -> None:
    """Poll `proc.url + path` until it answers with an `ok` status; bounded by `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not proc.same_process():  # not alive(): a server just started may not show its command line yet
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
    """Stop every process `proc`'s spawn started: SIGTERM, then SIGKILL after `grace` seconds. Only
    processes carrying its token are signalled, each through a pidfd opened after the token was read
    (so a pid reused meanwhile is never hit). True if anything was running."""
    _reap(proc.pid)
    members = proc.members()
    # A server stopped right after its fork may not carry its token in what the kernel shows yet (its
    # environment is still its parent's until exec): its start time says it is the one started.
    early = proc.pid not in members and proc.same_process()
    if early:
        _signal_started(proc.pid, proc.started, signal.SIGTERM)
        members = [proc.pid, *members]
    if not members:
        return False
    for pid in members:
        _signal(pid, proc.token, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(proc.pid)
        if not proc.members() and not (early and proc.same_process()):
            break
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while (left := proc.members()) and time.monotonic() < deadline:
        for pid in left:
            _signal(pid, proc.token, signal.SIGKILL)
        time.sleep(0.1)
        _reap(proc.pid)
    if early and proc.same_process():
        _signal_started(proc.pid, proc.started, signal.SIGKILL)
        _reap(proc.pid)
    if left:
        raise EnvironmentProblem(f"{proc.name}: processes {left} survived SIGKILL", hint="check `ps -o pid,stat,cmd`")
    return True


def _signal_started(pid: int, started: int, signum: int) -> None:
    """Signal `pid` through a pidfd if, once the pidfd is open, it is still the process started at `started`."""
    try:
        handle = os.pidfd_open(pid)
    except OSError:
        return
    try:
        found = process_identity(pid)
        if found is not None and found[0] == started:
            signal.pidfd_send_signal(handle, signum)
    except OSError:
        pass
    finally:
        os.close(handle)


def _signal(pid: int, token: str, signum: int) -> None:
    try:
        handle = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        if _has_token(pid, token):
            signal.pidfd_send_signal(handle, signum)
    except OSError:
        pass
    finally:
        os.close(handle)


def _reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is this process's child (a server started and stopped by the
    same command), so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of these processes (`local status`)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return total


@contextlib.contextmanager
def exclusive(path: Path, what: str, wait: float = 0) -> Iterator[None]:
    """Hold an exclusive lock on `path` while the block runs; another holder makes this wait up to `wait`
    seconds, then refuse, naming its pid. The kernel releases the lock when its holder dies (even by
    SIGKILL), so a crash never leaves the next run locked out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(handle, 200, 0).decode(errors="replace").strip() or "unknown"
                    raise EnvironmentProblem(
                        f"another `mlops local …` is running (pid {holder})",
                        hint="wait for it to finish (or pass --wait SECONDS), then run this again",
                    ) from None
                time.sleep(0.2)
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"{os.getpid()}: {what}\n".encode(), 0)
        yield
    finally:
        os.close(handle)


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
    with temporary.open("w") as handle:  # written whole and on disk before it replaces the old state
        handle.write(json.dumps(state, indent=2, default=_encode))
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def _encode(value: object) -> object:
    if isinstance(value, Proc):
        return asdict(value)
    return str(value)

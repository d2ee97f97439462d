"""The shadow candidate's process: `python -m apps.serving.shadow_worker FD SPEC` (started by
`apps/serving/shadow.py`, never by hand).

It lowers its own CPU priority to SCHED_IDLE (or else nice 19) before anything else runs (unless `SPEC`
says `"priority": "normal"`), dies with its parent, loads the candidate (`SPEC`: the candidate's
serving settings, or a test's loader), then scores each batch it is sent on the socket FD and sends
back one outcome per request, resting after each batch so that it uses at most `cpu_share` of a core.
Every half second it also sends what it holds (version, loaded, last error) when that changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

PR_SET_PDEATHSIG = 1


def deprioritise() -> str:
    """Run only on CPU time the serving worker does not want (threads started later inherit it).

    Where the kernel groups processes by session for fairness (autogroup: desktops, plain servers; not
    a container's cgroup), SCHED_IDLE alone would still get its session's fair share, so the process
    also starts a session of its own and gives that group the lowest weight (nice 19)."""
    with contextlib.suppress(OSError):
        os.setsid()
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write("19")
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(OSError):
            os.nice(19)
        return "nice 19"
    return "SCHED_IDLE"


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def rest(busy: float, share: float) -> None:
    """After `busy` CPU seconds, wait so that the process uses at most `share` of a core (a pod's CPU
    quota is shared with serving: idle priority alone would not keep the candidate from spending it)."""
    if 0 < share < 1 and busy > 0:
        time.sleep(min(busy * (1 / share - 1), 10.0))


def holder_of(spec: dict[str, Any]) -> Any:
    if "loader" in spec:  # "module:function" returning a holder-like object (the tests' candidates)
        module, _, name = str(spec["loader"]).partition(":")
        return getattr(importlib.import_module(module), name)(*spec.get("args", []))
    from apps.serving.config import ServingConfig  # noqa: PLC0415
    from apps.serving.model import ModelHolder  # noqa: PLC0415

    holder = ModelHolder(ServingConfig.model_validate(spec["config"]), optional=True)
    holder.start()
    return holder


def status_of(holder: Any) -> dict[str, Any]:
    model = holder.model
    pinned = getattr(getattr(holder, "config", None), "model_version", None)
    return {
        "loaded": model is not None,
        "model_version": model.model_version if model is not None else pinned,
        "registry_version": model.registry_version if model is not None else None,
        "last_error": holder.last_error,
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[2])
    if spec.get("priority", "idle") == "idle":
        deprioritise()
    die_with_parent()
    parent = os.getppid()
    connection = Connection(int(argv[1]))
    holder = holder_of(spec)
    sending = threading.Lock()

    def report_status() -> None:
        last: dict[str, Any] | None = None
        while os.getppid() == parent:
            status = status_of(holder)
            if status != last:
                with sending:
                    connection.send(("status", status))
                last = status
            time.sleep(0.5)

    threading.Thread(target=report_status, name="shadow-status", daemon=True).start()
    from apps.serving.shadow import Outcome, score  # noqa: PLC0415

    share = float(spec.get("cpu_share", 1.0))
    while True:
        try:
            _, batch = connection.recv()
        except (EOFError, OSError):
            return 0  # the serving worker is gone
        started = time.process_time()
        candidate = holder.model
        pinned = getattr(getattr(holder, "config", None), "model_version", None)
        label = str(candidate.model_version) if candidate is not None else str(pinned or "none")
        outcomes = []
        for job in batch:
            if candidate is None:  # a pinned candidate that does not load counts; no alias is not an error
                outcomes.append(Outcome(job.champion_version, label, "unavailable" if pinned else "skipped"))
            elif candidate.registry_version == job.champion_registry_version:
                outcomes.append(Outcome(job.champion_version, label, "skipped"))  # it was promoted meanwhile
            else:
                outcomes.append(score(candidate, label, job))
        with sending:
            connection.send(("scored", outcomes))
        rest(time.process_time() - started, share)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

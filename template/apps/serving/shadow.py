"""Shadow scoring: a candidate version scores a sample of the requests the champion answers, and only
its metrics say how it did.

The request path only offers a request: one random draw and, when it is sampled, a put into a bounded
queue (when the queue is full the request is dropped and counted). The candidate runs in a process of
its own (`python -m apps.serving.shadow_worker`), started by the serving worker, at the lowest CPU
priority Linux has (SCHED_IDLE: it runs only on CPU time nothing else wants; `SHADOW_PRIORITY=normal`
lifts that) and within a CPU budget
(`SHADOW_CPU_SHARE` of a core, default 10 %: the pod's CPU quota is serving's), so neither a slow nor
a crashing candidate can take much time from the answers:
- a sender thread takes up to `BATCH` requests off the queue and sends them over a socket, one batch in
  flight at a time; a slow candidate therefore fills the queue, and what does not fit is dropped;
- the worker process scores them and sends back, per request, whether the predicted classes agree,
  the score difference per row and its own time, which a receiver thread records per (champion,
  candidate) pair (`model_shadow_*` in `apps/serving/monitoring.py`);
- an exception of the candidate is counted (`failed`); if the process dies (a crash, the OOM killer),
  its batch is counted `failed` and a new process is started after `RESTART_SECONDS`.
No response waits for any of it or carries anything of it.

The candidate is the stack file's `serving.shadow.version` in a cluster, or whatever the alias `shadow`
names in the local environment (`mlops local promote --shadow`); `mlops gate` reads the pair's series
as evidence (`pipelines/promotion/evidence.py`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from apps.serving.monitoring import VersionMetrics

log = logging.getLogger(__name__)
BATCH = 64
RESTART_SECONDS = 5.0


@dataclass(frozen=True)
class Job:
    """One answered request: who answered it and with what."""

    champion_version: int
    champion_registry_version: int
    rows: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray


@dataclass(frozen=True)
class Outcome:
    """The candidate's verdict on one request (`outcome`: scored, failed or unavailable)."""

    champion_version: int
    candidate_version: str
    outcome: str
    agree: int = 0
    rows: int = 0
    differences: np.ndarray | None = None
    seconds: float = 0.0


def score(candidate: Any, candidate_version: str, job: Job) -> Outcome:
    """`candidate` (a LoadedModel) on `job`'s rows, compared with the champion's answer."""
    started = time.perf_counter()
    try:
        if job.rows.shape[1] != candidate.n_features:
            raise ValueError(f"the candidate takes {candidate.n_features} features, the champion {job.rows.shape[1]}")
        scores = np.asarray(candidate.predict_proba(job.rows), dtype=np.float64).reshape(-1)
        if scores.shape != job.probabilities.shape:
            raise ValueError(f"the candidate returned {scores.shape[0]} scores for {len(job.rows)} rows")
    except Exception:  # the candidate's fault: counted by the caller, and never anyone else's problem
        return Outcome(job.champion_version, candidate_version, "failed")
    seconds = time.perf_counter() - started
    agree = int(np.count_nonzero((scores >= 0.5) == job.predictions.astype(bool)))
    differences = scores - job.probabilities
    return Outcome(job.champion_version, candidate_version, "scored", agree, len(scores), differences, seconds)


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    connection: Connection
    status: dict[str, Any] = field(default_factory=dict)


class ShadowScorer:
    """Offers sampled requests to the candidate's process and records what it says, off the request path.

    `loader` names what the worker process loads: `{"config": <ServingConfig of the candidate>}`, or
    `{"loader": "module:function", "args": [...]}` (a function returning an object with `model` and
    `last_error`, like `ModelHolder`: the tests' candidates that fail or stall)."""

    def __init__(
        self,
        loader: dict[str, Any],
        metrics_of: Callable[[str], VersionMetrics],
        *,
        pinned_version: int | None,
        sample_pct: float,
        queue_size: int,
        draw: Callable[[], float] = random.random,
        env: dict[str, str] | None = None,
        restart_seconds: float = RESTART_SECONDS,
    ) -> None:
        self.loader, self.metrics_of, self.pinned_version = loader, metrics_of, pinned_version
        self.sample_pct, self.draw, self.env, self.restart_seconds = sample_pct, draw, env, restart_seconds
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._child: _Child | None = None
        self._in_flight: list[Job] = []
        self._acked = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self.restarts = 0
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ request path
    def offer(self, champion: Any, rows: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray) -> None:
        """Called for every answered request (`champion`: the LoadedModel that answered): cheap, never raises."""
        if self.draw() * 100 >= self.sample_pct:
            return
        child = self._child
        if self.pinned_version is None and (child is None or not child.status.get("loaded")):
            return  # following an alias that names nothing (yet): nothing to shadow, nothing to send
        try:
            self._queue.put_nowait(
                Job(champion.model_version, champion.registry_version, rows, probabilities, predictions)
            )
        except queue.Full:
            self.metrics_of(str(champion.model_version)).shadow_outcome(self._candidate_label(), "dropped")

    # ------------------------------------------------------------------ state
    def _candidate_label(self) -> str:
        child = self._child
        loaded = child.status.get("model_version") if child is not None else None
        version = loaded if loaded is not None else self.pinned_version
        return str(version) if version is not None else "none"

    @property
    def pending(self) -> int:
        return self._queue.qsize() + len(self._in_flight)

    @property
    def idle(self) -> bool:
        """Every request offered so far has been answered for (scored, failed, unavailable or skipped)."""
        with self._lock:
            return self._queue.unfinished_tasks == 0 and not self._in_flight

    def describe(self) -> dict[str, Any]:
        child = self._child
        status = dict(child.status) if child is not None else {}
        return {
            "model_version": status.get("model_version", self.pinned_version),
            "registry_version": status.get("registry_version"),
            "loaded": bool(status.get("loaded")),
            "sample_pct": self.sample_pct,
            "pending": self.pending,
            "last_error": status.get("last_error"),
            "pid": child.process.pid if child is not None else None,
            "restarts": self.restarts,
        }

    # ------------------------------------------------------------------ process and threads
    def start(self) -> None:
        self._threads = [threading.Thread(target=self._send_forever, name="shadow-sender", daemon=True)]
        self._threads[0].start()

    def stop(self) -> None:
        self._stopped.set()
        child = self._child
        if child is not None:
            self._end(child)

    def _spawn(self) -> _Child:
        parent_end, child_end = socket.socketpair()
        try:
            process = subprocess.Popen(  # this interpreter, this package's module
                [sys.executable, "-m", "apps.serving.shadow_worker", str(child_end.fileno()), json.dumps(self.loader)],
                pass_fds=[child_end.fileno()],
                env={**os.environ, **(self.env or {})},
                stdin=subprocess.DEVNULL,
            )
        finally:
            child_end.close()
        child = _Child(process, Connection(parent_end.detach()))
        threading.Thread(target=self._receive, args=(child,), name="shadow-receiver", daemon=True).start()
        return child

    def _end(self, child: _Child) -> None:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait(timeout=10)
        child.connection.close()

    def _send_forever(self) -> None:
        next_start = 0.0
        while not self._stopped.is_set():
            child = self._child
            if child is None or child.process.poll() is not None:
                if child is not None:
                    self._lost(child)
                wait = next_start - time.monotonic()
                if wait > 0:
                    self._stopped.wait(wait)
                    continue
                self._child = child = self._spawn()
                next_start = time.monotonic() + self.restart_seconds
            try:
                first = self._queue.get(timeout=1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._lock:
                self._in_flight = batch
                for _ in batch:
                    self._queue.task_done()
            self._acked.clear()
            try:
                child.connection.send(("score", batch))
            except OSError:
                self._lost(child)
                continue
            while not self._acked.wait(1):  # one batch in flight: a slow candidate backs up into the queue
                if child.process.poll() is not None or self._stopped.is_set():
                    self._lost(child)
                    break

    def _lost(self, child: _Child) -> None:
        """The worker process died: its batch counts as failed; a new one starts after RESTART_SECONDS.
        The batch leaves `_in_flight` last, so that `idle` is never true before it is accounted for."""
        label = self._candidate_label()
        with self._lock:
            for job in self._in_flight:
                self.metrics_of(str(job.champion_version)).shadow_outcome(label, "failed")
            if self._child is child:
                self._child = None
                if not self._stopped.is_set():
                    self.restarts += 1
                    log.warning(
                        "the shadow candidate's process (pid %s) exited with %s; a new one starts in %.0f s",
                        child.process.pid,
                        child.process.poll(),
                        self.restart_seconds,
                    )
            self._in_flight = []
        self._end(child)
        self._acked.set()

    def _receive(self, child: _Child) -> None:
        while True:
            try:
                kind, payload = child.connection.recv()
            except (EOFError, OSError):
                return
            if kind == "status":
                child.status = payload
                continue
            for outcome in payload:
                self._record(outcome)
            with self._lock:
                self._in_flight = []
            self._acked.set()

    def _record(self, outcome: Outcome) -> None:
        bound = self.metrics_of(str(outcome.champion_version))
        if outcome.outcome == "scored" and outcome.differences is not None:
            bound.shadowed(outcome.candidate_version, outcome.agree, outcome.rows, outcome.differences, outcome.seconds)
        elif outcome.outcome != "skipped":
            bound.shadow_outcome(outcome.candidate_version, outcome.outcome)

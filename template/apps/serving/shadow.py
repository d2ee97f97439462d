"""Shadow scoring: a candidate version scores a sample of the requests the champion answers, and only
its metrics say how it did.

The request path only offers a request: one random draw and, when it is sampled, a put into a
bounded queue (when the queue is full the request is dropped and counted). One thread takes requests
off the queue and scores them with the candidate, then records, per (champion, candidate) pair:
whether the predicted classes agree, the score difference per row, the candidate's time per request.
A candidate that raises is counted (`failed`) and logged at most once a minute; a slow one fills the
queue, and the rest is dropped. No response waits for it or carries anything of it.

The candidate is the stack file's `serving.shadow.version` in a cluster, or whatever the alias
`shadow` names in the local environment (`mlops local promote --shadow`); `mlops gate` reads the
pair's series as evidence (`pipelines/promotion/evidence.py`).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from apps.serving.model import LoadedModel, ModelHolder
from apps.serving.monitoring import VersionMetrics

log = logging.getLogger(__name__)
LOG_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class _Job:
    champion: LoadedModel
    candidate: LoadedModel
    rows: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray


class ShadowScorer:
    """Scores sampled requests with the candidate `holder` holds, off the request path."""

    def __init__(
        self,
        holder: ModelHolder,
        metrics_of: Callable[[LoadedModel], VersionMetrics],
        *,
        sample_pct: float,
        queue_size: int,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.holder, self.metrics_of, self.sample_pct, self.draw = holder, metrics_of, sample_pct, draw
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=queue_size)
        self._last_logged = -LOG_EVERY_SECONDS
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start scoring (the holder's loader is started by its owner)."""
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    @property
    def idle(self) -> bool:
        """Every request offered so far has been scored (or has failed) and recorded."""
        return self._queue.unfinished_tasks == 0

    def describe(self) -> dict[str, object]:
        candidate = self.holder.model
        return {
            "model_version": candidate.model_version if candidate else self.holder.config.model_version,
            "registry_version": candidate.registry_version if candidate else None,
            "loaded": candidate is not None,
            "sample_pct": self.sample_pct,
            "pending": self.pending,
            "last_error": self.holder.last_error,
        }

    def offer(self, champion: LoadedModel, rows: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray) -> None:
        """Called for every answered request: cheap, and never raises into the request."""
        if self.draw() * 100 >= self.sample_pct:
            return
        candidate = self.holder.model
        if candidate is None:
            pinned = self.holder.config.model_version
            if pinned is not None:  # a pinned candidate that does not load is worth counting; no alias is not
                self.metrics_of(champion).shadow_outcome(str(pinned), "unavailable")
            return
        if candidate.registry_version == champion.registry_version:
            return  # the candidate was promoted: it would only agree with itself
        try:
            self._queue.put_nowait(_Job(champion, candidate, rows, probabilities, predictions))
        except queue.Full:
            self.metrics_of(champion).shadow_outcome(str(candidate.model_version), "dropped")

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self.score(job)
            finally:
                self._queue.task_done()

    def score(self, job: _Job) -> None:
        bound, label = self.metrics_of(job.champion), str(job.candidate.model_version)
        started = time.perf_counter()
        try:
            if job.rows.shape[1] != job.candidate.n_features:
                raise ValueError(
                    f"the candidate takes {job.candidate.n_features} features, the champion {job.rows.shape[1]}"
                )
            scores = np.asarray(job.candidate.predict_proba(job.rows), dtype=np.float64).reshape(-1)
            if scores.shape != job.probabilities.shape:
                raise ValueError(f"the candidate returned {scores.shape[0]} scores for {len(job.rows)} rows")
        except Exception as exc:  # the candidate's fault: counted, and never anyone else's problem
            bound.shadow_outcome(label, "failed")
            now = time.monotonic()
            if now - self._last_logged >= LOG_EVERY_SECONDS:
                self._last_logged = now
                log.warning("shadow candidate version %s failed to score: %s: %s", label, type(exc).__name__, exc)
            return
        seconds = time.perf_counter() - started
        agree = int(np.count_nonzero((scores >= 0.5) == job.predictions.astype(bool)))
        bound.shadowed(label, agree, len(scores), scores - job.probabilities, seconds)

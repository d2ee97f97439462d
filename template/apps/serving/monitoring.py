"""What the serving app tells Prometheus, and the sample of inputs it keeps for drift checks.

Every series carries `model_name`, `model_version` and `environment`. On the request path only cheap
updates happen: counts and observations are added up in memory, per model version, and written to
prometheus_client's values (in multiprocess mode: a file write each, ~10 % of a 1-row request when
done per request) every `FLUSH_SECONDS` and before each scrape this process answers. The request
duration is taken by an ASGI middleware around the whole request (`apps/serving/asgi.py`). Feature
statistics and the drift score are computed off the request path, from the input sample, by a
background thread every `DRIFT_CHECK_SECONDS`.

The metric names are listed in `METRICS`: the Grafana dashboard and the alert rules (`infra/k8s/`)
may only use these, and the tests hold them to it. (BentoML's own request metrics are off: see
`apps/serving/asgi.py`.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.serving.drift import MIN_SAMPLE_ROWS, DriftReport, Reference, Reservoir, compare

LABELS = ("model_name", "model_version", "environment")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
# The candidate's score minus the champion's, per row (a shadowed request).
DIFFERENCE_BUCKETS = (-0.5, -0.2, -0.1, -0.05, -0.02, -0.01, -0.001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# The candidate's time to score one request: a compiled linear model takes ~20 µs.
SHADOW_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, *LATENCY_BUCKETS)
BUCKETS = {
    "model_prediction_score": SCORE_BUCKETS,
    "model_shadow_score_difference": DIFFERENCE_BUCKETS,
    "model_shadow_duration_seconds": SHADOW_LATENCY_BUCKETS,
}
NO_MODEL = "none"
FLUSH_SECONDS = 1.0

# name -> (type, extra labels, help). Counters are exposed with `_total`, histograms with
# `_bucket`/`_sum`/`_count`.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "model_requests": ("counter", ("outcome",), "Prediction requests by outcome: ok, rejected, unavailable, error"),
    "model_rejected_requests": ("counter", ("reason",), "Requests refused with a 4xx, by reason"),
    "model_responses": ("counter", ("code",), "Responses to /predict by HTTP status code (timeouts and crashes too)"),
    "model_request_duration_seconds": ("histogram", (), "Seconds from request to response for /predict"),
    "model_predictions": ("counter", ("predicted_class",), "Rows predicted, by predicted class"),
    "model_prediction_score": ("histogram", (), "Predicted probability of the positive class, per row"),
    "model_input_rows": ("counter", (), "Rows received for prediction"),
    "model_input_feature_mean": ("gauge", ("feature",), "Mean of each input feature over the drift sample"),
    "model_input_feature_stddev": ("gauge", ("feature",), "Standard deviation of each feature over the drift sample"),
    "model_feature_drift_statistic": ("gauge", ("feature",), "KS statistic of each feature against the reference"),
    "model_drift_share": ("gauge", (), "Share of features whose distribution drifted from the training reference"),
    "model_drift_sample_rows": ("gauge", (), "Rows in the sample the drift score was computed on"),
    "model_drift_checks": ("counter", (), "Drift checks completed (the drift gauges are as fresh as the last)"),
    # Shadow scoring (apps/serving/shadow.py): `model_version` is the champion that answered.
    "model_shadow_requests": (
        "counter",
        ("shadow_version", "outcome"),
        "Requests offered to the shadow candidate: scored, dropped (queue full), failed, unavailable",
    ),
    "model_shadow_rows": (
        "counter",
        ("shadow_version", "agreement"),
        "Rows the candidate scored, by whether its predicted class agreed with the champion's",
    ),
    "model_shadow_score_difference": (
        "histogram",
        ("shadow_version",),
        "The candidate's predicted probability minus the champion's, per row",
    ),
    "model_shadow_duration_seconds": ("histogram", ("shadow_version",), "Seconds the candidate took per request"),
}


def exposed_names() -> set[str]:
    """Every series name /metrics can show for METRICS (what dashboards and rules may reference)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {name + suffix for name, (kind, _, _) in METRICS.items() for suffix in suffixes[kind]}


class Metrics:
    """The prometheus_client objects, created once per process after BentoML set up multiprocess mode."""

    _instance: Metrics | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import prometheus_client as prom  # noqa: PLC0415 -- after PROMETHEUS_MULTIPROC_DIR is set (see bentoml.metrics)

        self.objects: dict[str, Any] = {}
        for name, (kind, extra, doc) in METRICS.items():
            labels = [*LABELS, *extra]
            if kind == "counter":
                self.objects[name] = prom.Counter(name, doc, labels)
            elif kind == "histogram":
                buckets = BUCKETS.get(name, LATENCY_BUCKETS)
                self.objects[name] = prom.Histogram(name, doc, labels, buckets=buckets)
            else:  # several workers each hold a sample: the dashboard shows the largest value
                self.objects[name] = prom.Gauge(name, doc, labels, multiprocess_mode="livemax")
        self._children: dict[tuple[str, str], VersionMetrics] = {}
        threading.Thread(target=self._flush_every, name="metrics-flush", daemon=True).start()

    def _flush_every(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Write what requests added up since the last flush (before a scrape; every FLUSH_SECONDS)."""
        for bound in list(self._children.values()):
            bound.flush()

    @classmethod
    def get(cls) -> Metrics:
        if cls._instance is not None:  # every request asks (the timing middleware): no lock once created
            return cls._instance
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def bound(self, model_name: str, model_version: str, environment: str) -> VersionMetrics:
        key = (model_version, environment)
        if key not in self._children:
            self._children[key] = VersionMetrics(self, (model_name, model_version, environment))
        return self._children[key]


@dataclass
class VersionMetrics:
    """One served version's series: label children cached, request-path updates added up in memory."""

    metrics: Metrics
    labels: tuple[str, str, str]
    _cache: dict[tuple[str, ...], Any] = field(default_factory=dict)
    _counts: dict[tuple[str, ...], float] = field(default_factory=dict)
    _observed: dict[tuple[str, ...], list[Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _add(self, amount: float, *key: str) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0.0) + amount

    def _observe(self, name: str, values: Any, *extra: str) -> None:
        with self._lock:
            self._observed.setdefault((name, *extra), []).append(values)

    def flush(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            observed, self._observed = self._observed, {}
        for key, amount in counts.items():
            self.child(*key).inc(amount)
        for key, parts in observed.items():
            observe_many(self.child(*key), np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts]))

    def child(self, name: str, *extra: str) -> Any:
        key = (name, *extra)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self.metrics.objects[name].labels(*self.labels, *extra)
        return found

    def rejected(self, reason: str) -> None:
        self._add(1, "model_rejected_requests", reason)
        self._add(1, "model_requests", "rejected")

    def failed(self, outcome: str) -> None:
        self._add(1, "model_requests", outcome)

    def responded(self, status: int, seconds: float) -> None:
        self._add(1, "model_responses", str(status))
        self._observe("model_request_duration_seconds", seconds)

    def served(self, probabilities: np.ndarray, predictions: np.ndarray) -> None:
        self._add(1, "model_requests", "ok")
        self._add(len(predictions), "model_input_rows")
        positives = int(predictions.sum())
        if positives:
            self._add(positives, "model_predictions", "1")
        if positives < len(predictions):
            self._add(len(predictions) - positives, "model_predictions", "0")
        self._observe("model_prediction_score", probabilities)

    def shadow_outcome(self, candidate: str, outcome: str) -> None:
        self._add(1, "model_shadow_requests", candidate, outcome)

    def shadowed(self, candidate: str, agree: int, rows: int, differences: np.ndarray, seconds: float) -> None:
        self._add(1, "model_shadow_requests", candidate, "scored")
        if agree:
            self._add(agree, "model_shadow_rows", candidate, "agree")
        if agree < rows:
            self._add(rows - agree, "model_shadow_rows", candidate, "disagree")
        self._observe("model_shadow_score_difference", differences, candidate)
        self._observe("model_shadow_duration_seconds", seconds, candidate)

    def drift(self, report: DriftReport, sample: np.ndarray, names: tuple[str, ...]) -> None:
        if len(sample):
            means, spreads = sample.mean(axis=0), sample.std(axis=0)
            for column, name in enumerate(names):
                self.child("model_input_feature_mean", name).set(float(means[column]))
                self.child("model_input_feature_stddev", name).set(float(spreads[column]))
        for feature in report.features:
            self.child("model_feature_drift_statistic", feature.feature).set(feature.ks_statistic)
        self.child("model_drift_share").set(report.share)
        self.child("model_drift_sample_rows").set(report.sample_rows)
        self.child("model_drift_checks").inc()


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """`histogram.observe(v)` for every finite v, as one write per touched bucket (a flush would
    otherwise make two file writes per value). prometheus_client has no batch observe; this adds the
    counts to the same values `observe` increments (`_upper_bounds`, `_buckets`, `_sum` of
    prometheus_client 0.2x), and a test holds the exported series equal to per-value observes."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return
    if len(finite) == 1:
        histogram.observe(float(finite[0]))
        return
    bounds = np.asarray(histogram._upper_bounds)  # ascending, +Inf last; observe() counts v in the first bound >= v
    counts = np.bincount(np.searchsorted(bounds, finite, side="left"), minlength=len(bounds))
    for index in np.flatnonzero(counts):
        histogram._buckets[index].inc(int(counts[index]))
    histogram._sum.inc(float(finite.sum()))


class InputSample:
    """Uniform samples of served rows in windows of `window_seconds`; thread-safe, bounded.

    Drift is judged on the last complete window (recent traffic, not everything since start-up),
    or on the running one until a window with enough rows has completed.
    """

    def __init__(
        self, capacity: int, width: int, window_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity, self.width, self.window_seconds, self.clock = capacity, width, window_seconds, clock
        self._lock = threading.Lock()
        self._current = Reservoir(capacity, width)
        self._previous: Reservoir | None = None
        self._started = clock()

    def add(self, rows: np.ndarray) -> None:
        with self._lock:
            now = self.clock()
            if now - self._started >= self.window_seconds:
                self._previous, self._current, self._started = self._current, Reservoir(self.capacity, self.width), now
            self._current.add(rows)

    def sample(self) -> tuple[np.ndarray, int]:
        """(rows, rows seen in that window)."""
        with self._lock:
            chosen = self._current
            if self._previous is not None and self._previous.seen >= MIN_SAMPLE_ROWS:
                chosen = self._previous
            return chosen.sample(), chosen.seen


def check_drift(
    sample: InputSample, reference: Reference, *, alpha: float, threshold: float
) -> tuple[DriftReport, np.ndarray]:
    rows, _ = sample.sample()
    return compare(reference, rows, alpha=alpha, threshold=threshold), rows

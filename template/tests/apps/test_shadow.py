"""Shadow scoring: what it measures for two known models, its bounded queue, and a candidate that fails
or stalls never reaching a response."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from apps.serving.asgi import render_metrics
from apps.serving.config import ServingConfig
from apps.serving.model import LoadedModel, ModelHolder
from apps.serving.monitoring import DIFFERENCE_BUCKETS, Metrics, VersionMetrics
from apps.serving.shadow import ShadowScorer
from apps.training.data import split
from apps.training.train import TrainingConfig, build_pipeline

MODEL = "prod.diagnosis"


@pytest.fixture(scope="module")
def models() -> tuple[LoadedModel, LoadedModel, np.ndarray]:
    """Two different fits of the reference model (a strong and a heavily regularised one) and held-out rows."""
    data = split(0.25, 42)
    strong = build_pipeline(TrainingConfig()).fit(data.x_train, data.y_train)
    weak = build_pipeline(TrainingConfig(regularization_c=0.0005)).fit(data.x_train, data.y_train)
    rows = np.asarray(data.x_test, dtype=np.float64)
    return LoadedModel.of(strong, 1, 1), LoadedModel.of(weak, 2, 2), rows


def _reader(environment: str) -> Any:
    """`value(name, **labels)` over what /metrics shows now for `environment` (labels besides the model's)."""
    from prometheus_client.parser import text_string_to_metric_families

    Metrics.get().flush()
    series = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("model_name", "environment")))): s.value
        for family in text_string_to_metric_families(render_metrics()[0].decode())
        for s in family.samples
        if s.labels.get("environment") == environment
    }

    def value(name: str, **labels: str) -> float:
        return series.get((name, tuple(sorted({"model_version": "1", **labels}.items()))), 0.0)

    return value


class Candidate:
    """Stands in for a candidate's estimator where the test needs it to fail or stall."""

    def __init__(self, behaviour: str, release: threading.Event | None = None) -> None:
        self.behaviour, self.release, self.calls = behaviour, release, 0
        self.n_features_in_ = 30

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.behaviour == "raise":
            raise RuntimeError("the candidate is broken")
        assert self.release is not None
        self.release.wait(30)
        return np.tile([0.5, 0.5], (len(rows), 1))


def _scorer(environment: str, candidate: LoadedModel, *, queue_size: int = 100, pct: float = 100) -> ShadowScorer:
    config = ServingConfig(tracking_uri="sqlite:///unused.db", model_name=MODEL, model_version=1)
    holder = ModelHolder(config.model_copy(update={"model_version": candidate.model_version}), optional=True)
    holder.hold(candidate)

    def metrics_of(champion: LoadedModel) -> VersionMetrics:
        return Metrics.get().bound(MODEL, str(champion.model_version), environment)

    scorer = ShadowScorer(holder, metrics_of, sample_pct=pct, queue_size=queue_size)
    scorer.start()  # the holder holds its candidate already: no loader
    return scorer


def _answer(champion: LoadedModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = champion.predict_proba(rows)
    return probabilities, (probabilities >= 0.5).astype(np.int64)


def _drain(scorer: ShadowScorer, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not scorer.idle:
        assert time.monotonic() < deadline, f"the scorer did not finish within {timeout} s"
        time.sleep(0.01)


def test_agreement_and_score_differences_for_two_known_models(models: tuple[LoadedModel, LoadedModel, Any]) -> None:
    champion, candidate, rows = models
    scorer = _scorer("shadow-known", candidate)
    for start in range(0, len(rows), 7):  # requests of up to 7 rows
        batch = rows[start : start + 7]
        scorer.offer(champion, batch, *_answer(champion, batch))
    _drain(scorer)

    mine, theirs = champion.predict_proba(rows), candidate.predict_proba(rows)
    agree = int(np.count_nonzero((mine >= 0.5) == (theirs >= 0.5)))
    assert 0 < agree < len(rows), "the two fits must disagree on some rows for this test to mean anything"
    value = _reader("shadow-known")
    pair = {"shadow_version": "2"}
    assert value("model_shadow_rows_total", agreement="agree", **pair) == agree
    assert value("model_shadow_rows_total", agreement="disagree", **pair) == len(rows) - agree
    requests = -(-len(rows) // 7)
    assert value("model_shadow_requests_total", outcome="scored", **pair) == requests
    differences = theirs - mine
    for bound in DIFFERENCE_BUCKETS:
        count = value("model_shadow_score_difference_bucket", le=str(bound), **pair)
        assert count == np.count_nonzero(differences <= bound), f"bucket le={bound}"
    assert value("model_shadow_score_difference_count", **pair) == len(rows)
    assert value("model_shadow_duration_seconds_count", **pair) == requests


def test_the_queue_bound_holds_and_the_rest_is_dropped_and_counted(models: Any) -> None:
    champion, _, rows = models
    release = threading.Event()
    stalled = Candidate("stall", release)
    scorer = _scorer("shadow-bound", LoadedModel(stalled, 3, 3, 30, ()), queue_size=10)
    offers = 1_000
    try:
        batch = rows[:1]
        answer = _answer(champion, batch)
        for _ in range(offers):
            scorer.offer(champion, batch, *answer)  # never blocks: the candidate is stuck on its first request
        assert scorer.pending == 10
    finally:
        release.set()
    _drain(scorer)
    value = _reader("shadow-bound")
    # One taken by the scorer, ten queued, every other one dropped: nothing waited and nothing was lost uncounted.
    assert value("model_shadow_requests_total", outcome="dropped", shadow_version="3") == offers - 11
    assert value("model_shadow_requests_total", outcome="scored", shadow_version="3") == 11 == stalled.calls


def test_a_failing_candidate_is_counted_and_the_scorer_carries_on(models: Any) -> None:
    champion, candidate, rows = models
    broken = LoadedModel(Candidate("raise"), 4, 4, 30, ())
    scorer = _scorer("shadow-broken", broken)
    batch = rows[:3]
    for _ in range(5):
        scorer.offer(champion, batch, *_answer(champion, batch))
    _drain(scorer)
    scorer.holder.hold(candidate)  # a good candidate next: the same thread scores it
    scorer.offer(champion, batch, *_answer(champion, batch))
    _drain(scorer)
    value = _reader("shadow-broken")
    assert value("model_shadow_requests_total", outcome="failed", shadow_version="4") == 5
    assert value("model_shadow_requests_total", outcome="scored", shadow_version="2") == 1


def test_sampling_offers_about_the_configured_share(models: Any) -> None:
    champion, candidate, rows = models
    draws = iter(np.random.default_rng(7).random(2_000).tolist())
    scorer = _scorer("shadow-sampled", candidate, pct=10)
    scorer.draw = lambda: next(draws)
    batch = rows[:1]
    for _ in range(2_000):
        scorer.offer(champion, batch, *_answer(champion, batch))
    _drain(scorer)
    expected = np.count_nonzero(np.random.default_rng(7).random(2_000) * 100 < 10)
    assert _reader("shadow-sampled")("model_shadow_requests_total", outcome="scored", shadow_version="2") == expected


def test_the_shadow_is_never_the_served_version() -> None:
    with pytest.raises(ValueError, match="SHADOW_MODEL_VERSION: the shadow must be another version"):
        ServingConfig.from_env({"MLFLOW_TRACKING_URI": "x", "MODEL_NAME": MODEL, "MODEL_VERSION": "2", "SHADOW_MODEL_VERSION": "2"})
    with pytest.raises(ValueError, match="SHADOW_SAMPLE_PCT"):
        ServingConfig.from_env({"MLFLOW_TRACKING_URI": "x", "MODEL_NAME": MODEL, "SHADOW_SAMPLE_PCT": "0"})

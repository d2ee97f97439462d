"""Shadow scoring: what it measures for two known models, its bounded queue, and a candidate that fails,
stalls or crashes its process never reaching a response (the candidate really runs in its own process)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.serving.asgi import render_metrics
from apps.serving.config import ServingConfig
from apps.serving.model import LoadedModel
from apps.serving.monitoring import DIFFERENCE_BUCKETS, Metrics, VersionMetrics
from apps.serving.shadow import BATCH, ShadowScorer
from apps.training.data import split
from apps.training.train import TrainingConfig, build_pipeline

MODEL = "prod.diagnosis"
WEAK = TrainingConfig(regularization_c=0.0005)


def _fit(config: TrainingConfig) -> Any:
    data = split(0.25, 42)
    return build_pipeline(config).fit(data.x_train, data.y_train)


class Held:
    """What the candidate's process holds (the shape of ModelHolder it reads)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model, self.last_error, self.config = model, None, None


class Misbehaving:
    """A candidate estimator that raises, stalls until a file exists, or crashes its process."""

    n_features_in_ = 30

    def __init__(self, behaviour: str, flag: str = "") -> None:
        self.behaviour, self.flag = behaviour, flag

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        if self.behaviour == "raise":
            raise RuntimeError("the candidate is broken")
        if self.behaviour == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        deadline = time.monotonic() + 60
        while not Path(self.flag).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return np.tile([0.5, 0.5], (len(rows), 1))


# Loaders the candidate's process calls (`{"loader": "tests.apps.test_shadow:<name>"}`).
def weak_candidate() -> Held:
    return Held(LoadedModel.of(_fit(WEAK), 2, 2))


def misbehaving_candidate(behaviour: str, version: int, flag: str = "") -> Held:
    return Held(LoadedModel(Misbehaving(behaviour, flag), version, version, 30, ()))


@pytest.fixture(scope="module")
def champion() -> tuple[LoadedModel, np.ndarray]:
    data = split(0.25, 42)
    return LoadedModel.of(_fit(TrainingConfig()), 1, 1), np.asarray(data.x_test, dtype=np.float64)


@pytest.fixture
def scorers() -> Iterator[list[ShadowScorer]]:
    made: list[ShadowScorer] = []
    yield made
    for scorer in made:
        scorer.stop()


def _scorer(made: list[ShadowScorer], environment: str, loader: str, *args: Any, **options: Any) -> ShadowScorer:
    def metrics_of(version: str) -> VersionMetrics:
        return Metrics.get().bound(MODEL, version, environment)

    # Normal priority but for the test of priority: on a busy machine (CI runs suites side by side) an idle-
    # priority process gets almost no CPU, and these tests are about what it does, not when.
    priority = options.pop("priority", "normal")
    spec = {"loader": f"tests.apps.test_shadow:{loader}", "args": list(args), "priority": priority}
    # The candidates are pinned versions (an alias that names nothing would have nothing sent).
    pinned = 2 if loader == "weak_candidate" else int(args[1])
    options = {"sample_pct": 100, "queue_size": 100, **options}
    scorer = ShadowScorer(spec, metrics_of, pinned_version=pinned, **options)
    made.append(scorer)
    scorer.start()
    return scorer


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


def _answer(champion: LoadedModel, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = champion.predict_proba(rows)
    return probabilities, (probabilities >= 0.5).astype(np.int64)


def _drain(scorer: ShadowScorer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not scorer.idle:
        assert time.monotonic() < deadline, f"the scorer did not finish within {timeout} s: {scorer.describe()}"
        time.sleep(0.02)


def test_agreement_and_score_differences_for_two_known_models(champion: Any, scorers: list[ShadowScorer]) -> None:
    model, rows = champion
    scorer = _scorer(scorers, "shadow-known", "weak_candidate")
    for start in range(0, len(rows), 7):  # requests of up to 7 rows
        batch = rows[start : start + 7]
        scorer.offer(model, batch, *_answer(model, batch))
    _drain(scorer)

    mine, theirs = model.predict_proba(rows), LoadedModel.of(_fit(WEAK), 2, 2).predict_proba(rows)
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
    assert scorer.describe()["loaded"] is True


def test_the_candidate_runs_apart_at_the_lowest_priority(scorers: list[ShadowScorer]) -> None:
    scorer = _scorer(scorers, "shadow-apart", "weak_candidate", priority="idle")
    deadline = time.monotonic() + 60  # the process lowers its priority first thing, before it imports anything heavy
    while (pid := scorer.describe()["pid"]) is None or os.sched_getscheduler(pid) != os.SCHED_IDLE:
        assert time.monotonic() < deadline, f"the candidate's process did not take idle priority: {scorer.describe()}"
        time.sleep(0.05)
    assert pid != os.getpid()
    normal = _scorer(scorers, "shadow-normal", "weak_candidate")  # SHADOW_PRIORITY=normal
    while not normal.describe()["loaded"]:  # loaded: past the point where it would have lowered its priority
        assert time.monotonic() < deadline, f"the normal-priority candidate did not load: {normal.describe()}"
        time.sleep(0.05)
    assert os.sched_getscheduler(normal.describe()["pid"]) == os.SCHED_OTHER


def test_the_queue_bound_holds_and_the_rest_is_dropped_and_counted(
    champion: Any, scorers: list[ShadowScorer], tmp_path: Path
) -> None:
    model, rows = champion
    flag = tmp_path / "go"
    scorer = _scorer(scorers, "shadow-bound", "misbehaving_candidate", "stall", 3, str(flag), queue_size=10)
    offers = 1_000
    batch = rows[:1]
    answer = _answer(model, batch)
    try:
        for _ in range(offers):
            scorer.offer(model, batch, *answer)  # never blocks, though the candidate is stuck
        assert scorer.pending <= 10 + BATCH
    finally:
        flag.touch()
    _drain(scorer)
    value = _reader("shadow-bound")
    dropped = value("model_shadow_requests_total", outcome="dropped", shadow_version="3")
    scored = value("model_shadow_requests_total", outcome="scored", shadow_version="3")
    # At most one batch in flight and ten queued; every other one dropped, and nothing lost uncounted.
    assert scored + dropped == offers
    assert 10 <= scored <= 10 + BATCH


def test_a_failing_candidate_is_counted(champion: Any, scorers: list[ShadowScorer]) -> None:
    model, rows = champion
    scorer = _scorer(scorers, "shadow-broken", "misbehaving_candidate", "raise", 4)
    for _ in range(5):
        scorer.offer(model, rows[:3], *_answer(model, rows[:3]))
    _drain(scorer)
    assert _reader("shadow-broken")("model_shadow_requests_total", outcome="failed", shadow_version="4") == 5


def test_a_crashing_candidate_process_is_counted_and_started_again(champion: Any, scorers: list[ShadowScorer]) -> None:
    model, rows = champion
    scorer = _scorer(scorers, "shadow-crash", "misbehaving_candidate", "crash", 5, restart_seconds=0.2)
    for round_ in range(3):
        for _ in range(4):
            scorer.offer(model, rows[:2], *_answer(model, rows[:2]))
        _drain(scorer)
        assert scorer.restarts == round_ + 1, scorer.describe()
    failed = _reader("shadow-crash")("model_shadow_requests_total", outcome="failed", shadow_version="5")
    assert failed == 12, "every request the crashed process held counts as failed"


def test_sampling_offers_about_the_configured_share(champion: Any, scorers: list[ShadowScorer]) -> None:
    model, rows = champion
    draws = iter(np.random.default_rng(7).random(2_000).tolist())
    scorer = _scorer(
        scorers, "shadow-sampled", "weak_candidate", sample_pct=10, draw=lambda: next(draws), queue_size=10_000
    )
    for _ in range(2_000):
        scorer.offer(model, rows[:1], *_answer(model, rows[:1]))
    _drain(scorer)
    expected = np.count_nonzero(np.random.default_rng(7).random(2_000) * 100 < 10)
    assert _reader("shadow-sampled")("model_shadow_requests_total", outcome="scored", shadow_version="2") == expected


def test_the_shadow_is_never_the_served_version() -> None:
    base = {"MLFLOW_TRACKING_URI": "x", "MODEL_NAME": MODEL}
    with pytest.raises(ValueError, match="SHADOW_MODEL_VERSION: the shadow must be another version"):
        ServingConfig.from_env({**base, "MODEL_VERSION": "2", "SHADOW_MODEL_VERSION": "2"})
    with pytest.raises(ValueError, match="SHADOW_SAMPLE_PCT"):
        ServingConfig.from_env({**base, "SHADOW_SAMPLE_PCT": "0"})


def test_an_alias_that_names_nothing_sends_nothing(champion: Any, scorers: list[ShadowScorer]) -> None:
    model, rows = champion
    scorer = ShadowScorer(
        {"loader": "tests.apps.test_shadow:nothing_held", "priority": "normal"},
        lambda version: Metrics.get().bound(MODEL, version, "shadow-none"),
        pinned_version=None,
        sample_pct=100,
        queue_size=10,
    )
    scorers.append(scorer)
    scorer.start()
    deadline = time.monotonic() + 60
    while scorer.describe()["pid"] is None or scorer.describe()["last_error"] is None:
        assert time.monotonic() < deadline, scorer.describe()
        time.sleep(0.05)
    for _ in range(50):
        scorer.offer(model, rows[:1], *_answer(model, rows[:1]))
    assert scorer.pending == 0 and scorer.idle
    value = _reader("shadow-none")
    assert value("model_shadow_requests_total", outcome="dropped", shadow_version="none") == 0


class Nothing:
    model = None
    last_error = "prod.diagnosis has no alias shadow yet"
    config = None


def nothing_held() -> Nothing:
    return Nothing()


def test_the_candidate_rests_in_proportion_to_its_work(monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.serving import shadow_worker

    slept: list[float] = []
    monkeypatch.setattr(shadow_worker.time, "sleep", slept.append)
    shadow_worker.rest(0.02, 0.1)  # 20 ms of CPU at a 10 % share: 180 ms of rest
    shadow_worker.rest(0.02, 1.0)  # a whole core: no rest
    shadow_worker.rest(100.0, 0.1)  # never more than 10 s at once
    assert slept == [pytest.approx(0.18), 10.0]

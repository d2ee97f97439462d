"""Drift statistics, the input sample, batched histogram writes, the compiled prediction path and the
load generator (wrk) with its bounds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from apps.serving.drift import MIN_SAMPLE_ROWS, Reference, Reservoir, compare, psi
from apps.serving.model import compile_linear
from apps.serving.monitoring import InputSample, observe_many
from apps.training.data import load_frame, split
from apps.training.train import TrainingConfig, build_pipeline
from core.errors import EXIT_BAD_INPUT
from pipelines.bench.wrk import check_loopback, find_wrk, run_wrk
from pipelines.cli import main


@pytest.fixture(scope="module")
def data() -> tuple[Reference, np.ndarray]:
    """The training reference (as training logs it) and the held-out rows of the same dataset."""
    parts = split(0.25, 42)
    return Reference.of(parts.x_train), parts.x_test.to_numpy()


def test_held_out_rows_of_the_same_data_do_not_drift(data: tuple[Reference, np.ndarray]) -> None:
    reference, held_out = data
    report = compare(reference, held_out, alpha=0.01, threshold=0.2)
    assert report.enough_data and not report.drifted, report.drifted_features
    assert report.share < 0.1 and len(report.features) == 30


def test_a_shifted_sample_drifts_and_names_the_features(data: tuple[Reference, np.ndarray]) -> None:
    reference, held_out = data
    shifted = held_out.copy()
    columns = [reference.names.index(n) for n in ("mean radius", "mean texture", "worst area")]
    stds = reference.features[:, columns].std(axis=0)
    shifted[:, columns] += stds  # one standard deviation on three features
    report = compare(reference, shifted, alpha=0.01, threshold=0.05)
    assert {"mean radius", "mean texture", "worst area"} <= set(report.drifted_features)
    assert report.drifted and report.share >= 0.1
    scaled = compare(reference, held_out * 1.3, alpha=0.01, threshold=0.2)
    assert scaled.drifted and scaled.share > 0.5


def test_too_small_a_sample_is_no_verdict(data: tuple[Reference, np.ndarray]) -> None:
    reference, held_out = data
    report = compare(reference, held_out[: MIN_SAMPLE_ROWS - 1] * 10)
    assert not report.enough_data and not report.drifted and report.share == 0.0 and report.features == []


def test_bad_thresholds_are_refused(data: tuple[Reference, np.ndarray]) -> None:
    reference, held_out = data
    with pytest.raises(ValueError, match="alpha must be in"):
        compare(reference, held_out, alpha=1.5)


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=5000)
    assert psi(base, rng.normal(size=5000)) < 0.01
    assert psi(base, rng.normal(0.5, 1, 5000)) > psi(base, rng.normal(0.2, 1, 5000)) > 0.02


def test_reference_round_trips_and_is_bounded(tmp_path: object, data: tuple[Reference, np.ndarray]) -> None:
    features, _ = load_frame()
    big = Reference.of(np.vstack([features.to_numpy()] * 3))
    assert len(big.features) == 1000
    reference, _ = data
    path = reference.save(tmp_path)  # type: ignore[arg-type]
    loaded = Reference.load(path)
    assert loaded.names == reference.names and np.array_equal(loaded.features, reference.features)


def test_reservoir_is_bounded_and_uniform() -> None:
    reservoir = Reservoir(capacity=500, width=1, seed=3)
    for start in range(0, 20_000, 100):
        reservoir.add(np.arange(start, start + 100, dtype=float).reshape(-1, 1))
    sample = reservoir.sample()
    assert sample.shape == (500, 1) and reservoir.seen == 20_000
    # A uniform sample of 0..19999 has its mean near 10000 (the standard error is about 260).
    assert abs(sample.mean() - 10_000) < 1_500
    assert (sample >= 10_000).mean() > 0.35


def test_input_sample_judges_the_last_complete_window() -> None:
    now = [0.0]
    sample = InputSample(capacity=200, width=2, window_seconds=60, clock=lambda: now[0])
    sample.add(np.zeros((100, 2)))
    rows, seen = sample.sample()
    assert seen == 100 and rows.shape == (100, 2), "the running window until one has completed"
    now[0] = 61
    sample.add(np.ones((10, 2)))
    rows, seen = sample.sample()
    assert seen == 100 and not rows.any(), "the completed window (enough rows) over the new one"
    now[0] = 122
    sample.add(np.ones((5, 2)))
    rows, seen = sample.sample()
    assert seen == 5, "the completed window had fewer rows than a verdict needs: the running one"


def test_compiled_linear_path_equals_the_pipeline() -> None:
    parts = split(0.25, 42)
    model = build_pipeline(TrainingConfig()).fit(parts.x_train, parts.y_train)
    compiled = compile_linear(model)
    assert compiled is not None
    weights, intercept = compiled
    rows = parts.x_test.to_numpy()
    expected = model.predict_proba(rows)[:, 1]
    assert np.max(np.abs(1 / (1 + np.exp(-(rows @ weights + intercept))) - expected)) < 1e-9


def test_other_estimators_are_served_as_they_are() -> None:
    from sklearn.ensemble import RandomForestClassifier

    parts = split(0.25, 42)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(parts.x_train, parts.y_train)
    assert compile_linear(forest) is None


class _Handler(BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        time.sleep(0.002)
        self.send_response(self.status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        _Handler.status = 200


def _url(httpd: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/predict"


@pytest.fixture(scope="module")
def wrk() -> str:
    """wrk, installed from Debian when missing and allowed (root); otherwise the test fails, naming it."""
    return find_wrk(install=True)


def test_load_generator_reports_requests_and_latencies(server: ThreadingHTTPServer, wrk: str) -> None:
    started = time.monotonic()
    result = run_wrk(_url(server), b"{}", connections=4, seconds=1, wrk=wrk)
    assert result.errors == 0 and result.requests > 10
    assert 0 < result.p50_ms <= result.p99_ms <= result.p999_ms <= result.max_ms
    assert result.requests_per_second == pytest.approx(result.requests / result.seconds)
    assert time.monotonic() - started < 10, "the run lasts its duration, not more"


def test_load_generator_counts_error_answers(server: ThreadingHTTPServer, wrk: str) -> None:
    _Handler.status = 500
    result = run_wrk(_url(server), b"{}", connections=2, seconds=1, wrk=wrk)
    assert result.requests > 0 and result.errors == result.requests


def test_load_generator_refuses_other_hosts_and_bad_bounds() -> None:
    for url in ("http://example.com/predict", "http://10.0.0.1:3000/predict"):
        with pytest.raises(ValueError, match="not a loopback address"):
            check_loopback(url)
    with pytest.raises(ValueError, match=r"seconds in \[1, 3600\]"):
        run_wrk("http://127.0.0.1:9/x", b"{}", connections=1, seconds=0)  # refused before wrk starts


def test_batched_histogram_writes_equal_one_observe_per_value() -> None:
    import prometheus_client as prom

    registry = prom.CollectorRegistry()
    histogram = prom.Histogram("h", "h", ["k"], buckets=(0.1, 0.5, 1.0), registry=registry)
    values = np.array([0.05, 0.1, 0.3, 0.5, 0.7, 1.0, 2.0, 0.1, np.nan, 0.0])
    for value in values[np.isfinite(values)]:
        histogram.labels("each").observe(float(value))
    observe_many(histogram.labels("batch"), values)
    observe_many(histogram.labels("batch"), np.array([]))

    def samples(label: str) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in registry.collect()
            for s in metric.samples
            if s.labels.get("k") == label and not s.name.endswith("_created")
        }

    assert samples("batch") == samples("each") and samples("each")[("h_count", "")] == 9


def test_large_batches_keep_the_reservoir_uniform() -> None:
    for batch in (64, 1000, 5000):
        reservoir = Reservoir(capacity=500, width=1, seed=11)
        for start in range(0, 40_000, batch):
            reservoir.add(np.arange(start, min(start + batch, 40_000), dtype=float).reshape(-1, 1))
        sample = reservoir.sample().ravel()
        assert reservoir.seen == 40_000 and len(sample) == 500
        assert len(np.unique(sample)) == 500, "a row is kept at most once"
        assert abs(sample.mean() - 20_000) < 2_500, batch  # the standard error is about 520
        assert 0.35 < (sample >= 20_000).mean() < 0.65, batch


def test_drift_without_endpoints_names_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("MLOPS_SERVING_PROD", "MLOPS_REGISTRY_PROD"):
        monkeypatch.delenv(name, raising=False)
    assert main(["drift", "--env", "prod"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "MLOPS_SERVING_PROD" in err and "MLOPS_REGISTRY_PROD" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "qa"], "'qa' is not one of"),
        (["--env", "prod", "--alpha", "2"], "--alpha"),
        (["--env", "prod", "--threshold", "0"], "--threshold"),
    ],
)
def test_drift_refuses_bad_arguments(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drift", *args]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err

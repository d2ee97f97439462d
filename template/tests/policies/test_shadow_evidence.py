"""Shadow evidence in the prod gate: the policy's rules, and the evidence read from serving's /metrics
and from a real Prometheus scraping it, for a pair with known counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from apps.serving.asgi import render_metrics
from apps.serving.monitoring import SHADOW_LATENCY_BUCKETS, Metrics
from pipelines.promotion.evidence import from_metrics_text, from_prometheus, quantile
from policies.models import POLICY_DIR, Evidence, PolicyError, ShadowEvidence, evaluate, load_policy
from tests.policies.test_model_policy import evidence

MODEL = "prod.diagnosis"


def seen(**changes: Any) -> ShadowEvidence:
    values: dict[str, Any] = {
        "champion_version": 2,
        "candidate_version": 3,
        "requests": 800,
        "rows": 800,
        "agreement": 0.98,
        "p95_ms": 1.2,
        "dropped": 0,
        "failed": 0,
        "source": "http://127.0.0.1:1/metrics",
    }
    values.update(changes)
    return ShadowEvidence(**values)


def shadow_rules(found: Evidence) -> dict[str, tuple[bool, str]]:
    verdict = evaluate(load_policy("prod"), found)
    return {r.rule: (r.passed, r.detail) for r in verdict.rules if r.rule.startswith("shadow")}


def test_prod_requires_a_shadow_section(tmp_path: Path) -> None:
    text = (POLICY_DIR / "prod.yaml").read_text()
    (tmp_path / "prod.yaml").write_text(text[: text.index("shadow:")])
    with pytest.raises(PolicyError, match="shadow: prod requires shadow evidence"):
        load_policy("prod", tmp_path)


def test_good_evidence_passes_every_shadow_rule() -> None:
    rules = shadow_rules(evidence(served_version=2, shadow=seen()))
    assert set(rules) == {"shadow_requests", "shadow_agreement", "shadow_p95_ms"}
    assert all(passed for passed, _ in rules.values()), rules


def test_a_first_version_needs_no_shadow() -> None:
    assert shadow_rules(evidence(served_version=None)) == {
        "shadow_evidence": (True, "prod serves nothing yet: no version to compare with")
    }


@pytest.mark.parametrize(
    ("shadow", "rule", "detail"),
    [
        (None, "shadow_evidence", "has not scored prod's traffic beside version 2"),
        (seen(requests=0), "shadow_evidence", "promote it with --shadow first"),
        (seen(requests=120, dropped=40), "shadow_requests", "120 requests scored beside v2, at least 500; 40 dropped"),
        (seen(agreement=0.9), "shadow_agreement", "agreement with v2 = 0.9000 over 800 rows, at least 0.95"),
        (seen(agreement=None), "shadow_agreement", "agreement with v2 = unknown"),
        (seen(p95_ms=80.0), "shadow_p95_ms", "the candidate's p95 = 80.00 ms, at most 50 ms"),
    ],
)
def test_each_shadow_rule_refuses(shadow: ShadowEvidence | None, rule: str, detail: str) -> None:
    rules = shadow_rules(evidence(served_version=2, shadow=shadow))
    passed, said = rules[rule]
    assert not passed and detail in said, said


def test_the_shadow_itself_is_judged_without_the_evidence_it_is_to_gather() -> None:
    policy = load_policy("prod").without_shadow()
    verdict = evaluate(policy, evidence(served_version=2, shadow=None))
    assert verdict.passed and not any(r.rule.startswith("shadow") for r in verdict.rules)


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ([(0.001, 50), (0.0025, 90), (0.005, 100), (float("inf"), 100)], 0.00375),  # within (0.0025, 0.005]
        ([(0.001, 10), (float("inf"), 100)], 0.001),  # in +Inf: the largest finite bound
        ([(0.001, 100), (0.01, 100), (float("inf"), 100)], 0.00095),  # within the first bucket, from 0
        ([(0.001, 0), (float("inf"), 0)], None),
    ],
)
def test_quantile_interpolates_as_prometheus_does(buckets: list[tuple[float, float]], expected: float | None) -> None:
    found = quantile(0.95, buckets)
    assert found == pytest.approx(expected) if expected is not None else found is None


def _record(environment: str, rng: np.random.Generator) -> dict[str, Any]:
    """Known shadow outcomes for the pair (2, 3) under `environment`: what the evidence must say."""
    bound = Metrics.get().bound(MODEL, "2", environment)
    agree = rows = 0
    seconds = rng.uniform(0.0002, 0.004, 300)
    for index, took in enumerate(seconds):
        n = int(rng.integers(1, 4))
        agreed = n if index % 10 else n - 1
        bound.shadowed("3", agreed, n, rng.normal(0, 0.05, n), float(took))
        agree, rows = agree + agreed, rows + n
    for _ in range(7):
        bound.shadow_outcome("3", "dropped")
    bound.shadow_outcome("3", "failed")
    Metrics.get().bound(MODEL, "2", environment).shadowed("9", 1, 1, np.zeros(1), 0.1)  # another pair: not counted
    Metrics.get().flush()
    cumulative = [(b, float(np.count_nonzero(seconds <= b))) for b in SHADOW_LATENCY_BUCKETS] + [(float("inf"), 300.0)]
    return {"requests": 300, "rows": rows, "agreement": round(agree / rows, 4), "p95": quantile(0.95, cumulative)}


def test_evidence_from_the_metrics_page() -> None:
    truth = _record("evidence-page", np.random.default_rng(1))
    text = render_metrics()[0].decode()
    text = "\n".join(
        line for line in text.splitlines() if 'environment="evidence-page"' in line or line.startswith("#")
    )
    found = from_metrics_text(text, MODEL, 2, 3, "page")
    assert (found.requests, found.rows, found.agreement) == (truth["requests"], truth["rows"], truth["agreement"])
    assert found.p95_ms == pytest.approx(truth["p95"] * 1000, abs=1e-3)
    assert (found.dropped, found.failed) == (7, 1)


def test_evidence_from_a_real_prometheus(tmp_path: Path) -> None:
    """Prometheus scrapes this process's series (the same exposition as serving's /metrics); the ratios
    it answers are exact, the counts within its `increase()` extrapolation."""
    import prometheus_client

    from pipelines.common.procs import LOOPBACK, free_port
    from tests.prometheus import prometheus, wait_scraped

    port = free_port()
    server, thread = prometheus_client.start_http_server(port, addr=LOOPBACK)
    try:
        # Earlier traffic, scraped before the window's: a series' first sample is where increase() starts.
        _record("evidence-prom", np.random.default_rng(3))
        with prometheus([f"{LOOPBACK}:{port}"], tmp_path) as url:
            selector = '{environment="evidence-prom",shadow_version="3",outcome="dropped"}'
            wait_scraped(url, f"sum(model_shadow_requests_total{selector})", 7)
            truth = _record("evidence-prom", np.random.default_rng(2))
            wait_scraped(url, f"sum(model_shadow_requests_total{selector})", 14)
            found = from_prometheus(url, "evidence-prom", MODEL, 2, 3, window_hours=1)
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert found.source == url
    assert found.agreement == pytest.approx(truth["agreement"], abs=2e-3)
    assert found.p95_ms == pytest.approx(truth["p95"] * 1000, rel=0.02)
    # increase() extrapolates to the window's edges, which over a few 1 s scrapes is a large share.
    assert truth["requests"] * 0.9 <= found.requests <= truth["requests"] * 3
    assert found.dropped > 0 and found.failed > 0

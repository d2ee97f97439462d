"""Shadow traffic in the local environment, for real: a candidate loaded as prod's shadow by the running
BentoML server, held-out rows replayed, and prod's gate deciding from the evidence on /metrics."""

from __future__ import annotations

import json

import httpx
import pytest

from core.registry import SHADOW, by_alias, client_for, registered_name
from infra.k8s import dashboard
from infra.settings import MonitoringSettings
from pipelines.cli import main
from pipelines.local.environment import LocalEnvironment, UpSummary
from pipelines.promotion.evidence import from_serving
from pipelines.promotion.registries import PromotionRefused, promote
from tests.infra.test_monitoring_objects import referenced

pytestmark = pytest.mark.integration


def _candidate_in_staging(env: LocalEnvironment) -> int:
    from apps.training.train import TrainingConfig, train

    new = train(env.tracking_uri(), registered_name("dev", env.model), TrainingConfig(regularization_c=0.5))
    for target in ("dev", "staging"):
        promote(env.model, new.version, target, env.registries())
    return new.version


def test_shadow_traffic_then_the_gate_decides_from_the_evidence(
    local_env: tuple[LocalEnvironment, UpSummary], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, _ = local_env
    monkeypatch.setenv("MLOPS_LOCAL_HOME", str(env.home))  # the CLI finds this test session's environment
    registries = env.registries()
    served = env.champions()["prod"]
    assert served is not None
    candidate = _candidate_in_staging(env)
    reader = env.evidence_reader("prod")
    # Without shadow traffic the prod gate refuses, and prod keeps serving its version.
    with pytest.raises(PromotionRefused, match=f"has not scored prod's traffic beside version {served}"):
        promote(env.model, candidate, "prod", registries, evidence=reader)
    assert env.champions()["prod"] == served

    promote(env.model, candidate, "prod", registries, shadow=True)
    serving = env.running()["serving"]
    env.wait_shadow(serving, candidate, timeout=120)
    info = httpx.post(serving.url + "/model", json={}, timeout=10).json()
    assert info["model_version"] == served and info["shadow"]["model_version"] == candidate
    assert info["shadow"]["pid"] != serving.pid, "the candidate scores in a process of its own"

    capsys.readouterr()
    assert main(["local", "traffic", "--rows", "700", "--format", "json"]) == 0
    sent = json.loads(capsys.readouterr().out)
    assert sent["statuses"] == {"200": 700} and sent["served_versions"] == {str(served): 700}
    seen = from_serving(serving.url, registered_name("prod", env.model), served, candidate)
    assert seen.requests >= 700 and seen.dropped == 0 and seen.failed == 0
    assert seen.agreement is not None and seen.agreement > 0.9, "two fits of one model mostly agree"
    assert sent["shadow"]["requests"] == seen.requests
    # What the dashboard's shadow panels query, a real server with a shadow exports.
    text = httpx.get(f"{serving.url}/metrics", timeout=10).text
    panels = dashboard.dashboard("ns", MonitoringSettings())["panels"]
    used = {n for p in panels for t in p["targets"] for n in referenced(t["expr"]) if n.startswith("model_shadow_")}
    assert len(used) == 4 and all(f"\n{name}{{" in text for name in used), used

    result = promote(env.model, candidate, "prod", registries, evidence=reader)
    rules = {r.rule: r for r in result.verdict.rules}
    assert rules["shadow_requests"].passed and rules["shadow_agreement"].passed and rules["shadow_p95_ms"].passed
    assert env.champions()["prod"] == candidate
    prod = registered_name("prod", env.model)
    assert by_alias(client_for(env.tracking_uri()), prod, SHADOW) is None, "the shadow serves now: alias gone"
    env._wait_served_version(serving, candidate, timeout=60)


def test_a_shadow_needs_something_served_beside_it(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    from core.errors import BadInput

    env, _ = local_env
    served = env.champions()["prod"]
    with pytest.raises(BadInput, match=f"a shadow of version {served} would have nothing to be compared with"):
        promote(env.model, served, "prod", env.registries(), shadow=True)  # type: ignore[arg-type]

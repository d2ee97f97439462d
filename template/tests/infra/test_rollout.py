"""Progressive delivery as data: serving's Rollout and its AnalysisTemplate are valid against the
pinned chart's CRD schemas, follow the stack's canary and monitoring settings, and carry the shadow."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from infra.config import load_stack
from infra.k8s import apps, platform, rollout, serving
from infra.settings import CanarySettings, MonitoringSettings, ServingSettings
from pipelines.plan.graph import Plan
from tests.conftest import ROOT
from tests.infra.crds import validate_custom
from tests.planning import containers, key

ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
ANALYSIS = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"


def objects(settings: dict[str, Any], monitoring: MonitoringSettings | None = None) -> dict[str, Any]:
    ctx = apps.AppContext("ns", "prod", {"project": "p"}, "s3://b/mlflow")
    made = serving.serving_objects(
        ctx,
        ServingSettings.model_validate(settings),
        "image@sha256:" + "a" * 64,
        tracking_auth=True,
        monitoring=monitoring or MonitoringSettings(),
    )
    return {o["kind"]: o for o in made}


SHADOWED = {"model": {"name": "m", "version": 3}, "shadow": {"version": 4, "sample_pct": 25}}


def test_rollout_and_analysis_are_valid_against_the_crds() -> None:
    made = objects(SHADOWED)
    validate_custom(made["Rollout"])
    validate_custom(made["AnalysisTemplate"])


@pytest.mark.parametrize(
    ("kind", "path", "value", "complaint"),
    [
        ("Rollout", ("spec", "strategy", "canary", "maxSurgeTypo"), 1, "Additional properties"),
        ("Rollout", ("spec", "strategy", "canary", "steps", 0, "setWeight"), "ten", "is not of type 'integer'"),
        ("AnalysisTemplate", ("spec", "metrics", 0, "provider", "prometheus", "adress"), "x", "Additional properties"),
        (
            "AnalysisTemplate",
            ("spec", "metrics", 0, "failureLimit"),
            [1],
            "is not valid under any of the given schemas",
        ),
    ],
)
def test_the_crd_schemas_catch_a_bad_field(kind: str, path: tuple[Any, ...], value: Any, complaint: str) -> None:
    obj = copy.deepcopy(objects(SHADOWED)[kind])
    target: Any = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        validate_custom(obj)


def test_canary_steps_and_analysis_follow_the_stack() -> None:
    settings = load_stack(ROOT, "prod")
    made = objects(settings.serving.model_dump(mode="json"), settings.monitoring)
    steps = made["Rollout"]["spec"]["strategy"]["canary"]["steps"]
    expected: list[dict[str, Any]] = []
    for step in settings.serving.canary.steps:
        expected += [{"setWeight": step.weight}, {"pause": {"duration": f"{step.pause_minutes}m"}}]
    assert steps == expected
    canary = made["Rollout"]["spec"]["strategy"]["canary"]
    assert canary["analysis"]["templates"] == [{"templateName": made["AnalysisTemplate"]["metadata"]["name"]}]
    metrics = {m["name"]: m for m in made["AnalysisTemplate"]["spec"]["metrics"]}
    assert set(metrics) == {"error-ratio", "latency-p95"}, "no shadow: no agreement metric"
    assert metrics["error-ratio"]["successCondition"].endswith(f"<= {settings.monitoring.error_rate_pct / 100:g}")
    assert metrics["latency-p95"]["successCondition"].endswith(f"<= {settings.monitoring.p95_latency_ms / 1000:g}")
    for metric in metrics.values():  # only the new pods are judged
        assert 'rollouts_pod_template_hash="{{args.canary-hash}}"' in metric["provider"]["prometheus"]["query"]
        assert metric["provider"]["prometheus"]["address"] == rollout.PROMETHEUS_URL


def test_a_shadow_reaches_the_pods_and_the_analysis() -> None:
    made = objects(SHADOWED)
    template = made["Rollout"]["spec"]["template"]
    env = {e["name"]: e.get("value") for e in template["spec"]["containers"][0]["env"]}
    assert (env["SHADOW_MODEL_VERSION"], env["SHADOW_SAMPLE_PCT"], env["MODEL_VERSION"]) == ("4", "25", "3")
    assert template["metadata"]["annotations"]["mlops/shadow-version"] == "4"
    agreement = next(m for m in made["AnalysisTemplate"]["spec"]["metrics"] if m["name"] == "shadow-agreement")
    assert agreement["successCondition"].endswith(f">= {CanarySettings().min_shadow_agreement:g}")
    assert 'agreement="agree"' in agreement["provider"]["prometheus"]["query"]


def test_the_autoscaler_scales_the_rollout_and_metrics_carry_the_revision() -> None:
    made = objects(SHADOWED)
    assert made["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"] == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "name": "serving",
    }
    assert "Deployment" not in made
    monitor = platform.service_monitor("ns", {})
    (relabel,) = monitor["spec"]["endpoints"][0]["relabelings"]
    assert relabel["targetLabel"] == rollout.HASH_LABEL


def test_canary_off_deploys_a_plain_deployment(plan_with: Any) -> None:
    def off(config: dict[str, Any]) -> None:
        config[key("serving")]["canary"] = {"enabled": False}

    plan = plan_with("dev", off)
    assert not plan.of_type(ROLLOUT) and not plan.of_type(ANALYSIS)
    assert any(d.inputs["metadata"]["name"] == "serving" for d in plan.of_type("kubernetes:apps/v1:Deployment"))
    charts = {r.inputs["chart"] for r in plan.of_type("kubernetes:helm.sh/v3:Release")}
    assert "kube-prometheus-stack" in charts and rollout.ROLLOUTS_CHART not in charts


def test_serving_waits_for_the_rollouts_controller(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    for workload in plan.of_type(ROLLOUT):
        assert containers(workload)[0]["image"].split("@")[1].startswith("sha256:")
    controllers = {
        r.urn for r in plan.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == rollout.ROLLOUTS_CHART
    }
    components = [r for r in plan.resources if r.type == "mlops:k8s:ModelServing"]
    assert components and len(controllers) == len(components) == len(plan.clouds)
    for component in components:  # its Rollout is registered only after the component's dependencies
        assert len(controllers & set(component.dependencies)) == 1, "the Rollout's CRDs come before any Rollout"

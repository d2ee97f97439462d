"""The dashboard, alert rules and drift CronJob as data: they parse, use only series the app exports,
follow the stack's settings, and the CronJob runs hardened on the spot pool."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from apps.serving.monitoring import exposed_names
from infra.config import load_stack
from infra.k8s import dashboard, platform
from pipelines.plan.graph import Plan
from tests.conftest import ROOT
from tests.planning import PROJECT, stack_images

SERIES = re.compile(r"\b((?:model|bentoml)_[a-z_]+)\s*[{\[(]")


def referenced(expr: str) -> set[str]:
    return set(SERIES.findall(expr))


def dashboards_of(plan: Plan) -> list[dict[str, Any]]:
    """One per cluster (two with both clouds)."""
    maps = [
        r for r in plan.of_type("kubernetes:core/v1:ConfigMap") if "grafana_dashboard" in r.inputs["metadata"]["labels"]
    ]
    assert len(maps) == len(plan.clouds)
    return [json.loads(m.inputs["data"]["model-serving.json"]) for m in maps]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_dashboard_and_rules_use_only_exported_series(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    boards = dashboards_of(plan)
    exprs = [target["expr"] for board in boards for panel in board["panels"] for target in panel["targets"]]
    rules = plan.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    exprs += [rule["expr"] for r in rules for group in r.inputs["spec"]["groups"] for rule in group["rules"]]
    used = set().union(*(referenced(e) for e in exprs))
    # Only the app's own series: BentoML's request metrics are off (apps/serving/asgi.py).
    assert used - exposed_names() == set()
    # Every kind of signal the issue asks for is on the board.
    for series in ("model_request_duration_seconds_bucket", "model_prediction_score_bucket", "model_drift_share"):
        assert series in used
    assert {"model_input_feature_mean", "model_requests_total", "model_rejected_requests_total"} <= used
    namespace = plan.of_type("kubernetes:apps/v1:Deployment")[0].inputs["metadata"]["namespace"]
    assert all(f'namespace="{namespace}"' in e for e in exprs), "every query is scoped to the stack's namespace"
    assert all(len({p["id"] for p in board["panels"]}) == len(board["panels"]) for board in boards)


def test_a_typo_in_a_series_name_would_be_caught() -> None:
    assert referenced('rate(model_request_duratoin_seconds_bucket{ns="x"}[5m])') - exposed_names() == {
        "model_request_duratoin_seconds_bucket"
    }


def test_thresholds_come_from_the_stack() -> None:
    monitoring = load_stack(ROOT, "prod").monitoring.model_copy(update={"drift_threshold": 0.35})
    rules = platform.prometheus_rules("ns", {}, monitoring)["spec"]["groups"][0]["rules"]
    drift = next(r for r in rules if r["alert"] == "ModelInputDrift")
    assert drift["expr"].endswith(">= 0.35") and drift["for"] == "1h"
    board = dashboard.dashboard("ns", monitoring)
    steps = next(p for p in board["panels"] if p["title"].startswith("Input drift"))["fieldConfig"]["defaults"]
    assert steps["thresholds"]["steps"][-1]["value"] == 0.35


def test_grafana_loads_dashboards_from_every_namespace() -> None:
    sidecar = platform.prometheus_stack_values(30)["grafana"]["sidecar"]["dashboards"]
    assert sidecar == {"enabled": True, "label": "grafana_dashboard", "labelValue": "1", "searchNamespace": "ALL"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_drift_cronjob_runs_the_check_on_the_spot_pool(plans: dict[str, Plan], stack: str) -> None:
    settings = load_stack(ROOT, stack)
    jobs = plans[stack].of_type("kubernetes:batch/v1:CronJob")
    assert len(jobs) == len(plans[stack].clouds)
    spec = jobs[0].inputs["spec"]
    assert spec["schedule"] == settings.monitoring.drift_schedule and spec["concurrencyPolicy"] == "Forbid"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert {"key": "workload", "operator": "Equal", "value": "batch", "effect": "NoSchedule"} in pod["tolerations"]
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert preferred["preference"]["matchExpressions"][0]["values"] == ["batch"]
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0, "a hung check ends"
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:4] == ["mlops", "drift", "--env", stack]
    assert "--record" in command and "--fail-on-drift" in command
    assert command[command.index("--serving-url") + 1].startswith(f"http://serving.{PROJECT}")
    assert container["image"] in stack_images(plans[stack], "serving")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert pod["serviceAccountName"] == "serving", "it reads the served version's artifacts as serving does"


def test_serving_deployment_carries_the_drift_settings(plans: dict[str, Plan]) -> None:
    monitoring = load_stack(ROOT, "prod").monitoring
    deployment = next(
        d
        for d in plans["prod"].of_type("kubernetes:argoproj.io/v1alpha1:Rollout")
        if d.inputs["metadata"]["name"] == "serving"
    )
    env = {e["name"]: e.get("value") for e in deployment.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DRIFT_THRESHOLD"] == f"{monitoring.drift_threshold:g}"
    assert env["DRIFT_WINDOW_SECONDS"] == str(monitoring.drift_window_minutes * 60)
    assert env["SERVING_ACCESS_LOG"] == "false" and env["SERVING_WORKERS"] == "1"

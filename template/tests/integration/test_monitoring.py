"""Monitoring for real: labelled metrics on a running BentoML server, and `mlops drift --env local`
against the version it serves, end to end (sample endpoint, reference in the registry, record, retrain)."""

from __future__ import annotations

import re
import time

import httpx
import numpy as np
import pytest

from apps.serving.monitoring import exposed_names
from apps.training.data import load_frame
from core.registry import client_for, registered_name
from infra.config import load_stack
from infra.k8s import dashboard, platform
from pipelines.local.environment import LocalEnvironment, UpSummary
from pipelines.monitoring.drift import check, record, retrain
from tests.conftest import ROOT
from tests.infra.test_monitoring_objects import referenced

pytestmark = pytest.mark.integration


def _serving(env: LocalEnvironment) -> str:
    env.up()  # reuses whatever runs; restarts what an earlier test stopped
    return env.running()["serving"].url


def _send(url: str, rows: np.ndarray) -> None:
    for start in range(0, len(rows), 200):
        response = httpx.post(f"{url}/predict", json={"instances": rows[start : start + 200].tolist()}, timeout=30)
        assert response.status_code == 200, response.text


def test_metrics_are_labelled_and_cover_the_dashboard_and_rules(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, _ = local_env
    url = _serving(env)
    features, _ = load_frame()
    _send(url, features.to_numpy()[:120])
    assert httpx.post(f"{url}/predict", json={"instances": [[1.0, 2.0]]}, timeout=10).status_code == 422
    version = httpx.post(f"{url}/model", json={}, timeout=10).json()["model_version"]
    labels = ['environment="local"', f'model_name="prod.{env.model}"', f'model_version="{version}"']
    deadline, text = time.monotonic() + 30, ""
    while time.monotonic() < deadline:  # the drift gauges appear after the app's first check (every 5 s locally)
        text = httpx.get(f"{url}/metrics", timeout=10).text
        if "model_feature_drift_statistic{" in text:
            break
        time.sleep(1)
    series_of_the_app = ("model_requests_total", "model_responses_total", "model_request_duration_seconds_bucket")
    for series in (*series_of_the_app, "model_prediction_score_bucket"):
        lines = [line for line in text.splitlines() if line.startswith(series + "{")]
        assert any(all(label in line for label in labels) for line in lines), (series, lines[:2])
    assert re.search(r'model_requests_total\{[^}]*outcome="ok"', text)
    assert re.search(r'model_rejected_requests_total\{[^}]*reason="wrong_shape"', text)
    assert re.search(r'model_input_feature_mean\{[^}]*feature="mean radius"', text)
    assert "model_drift_share{" in text, "the drift gauge was not set within 30 s"
    # Everything the dashboard and the alert rules query exists on a real server.
    monitoring = load_stack(ROOT, "prod").monitoring
    exprs = list(platform.alert_expressions("ns", monitoring).values())
    exprs += [t["expr"] for p in dashboard.dashboard("ns", monitoring)["panels"] for t in p["targets"]]
    used = set().union(*(referenced(e) for e in exprs))
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", text, re.MULTILINE))
    # The shadow panels' series exist while a shadow runs: tests/integration/test_local_shadow.py checks them.
    assert {u for u in used if not u.startswith("model_shadow_")} <= exported, used - exported
    assert used <= exposed_names()


def test_drift_end_to_end_unshifted_then_shifted(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, _ = local_env
    url = _serving(env)
    features, _ = load_frame()
    rows = features.to_numpy()
    _send(url, np.vstack([rows] * 3))  # ~1700 real rows: the few repeated smoke-test rows weigh nothing
    endpoints = {"serving_url": url, "registry_uri": env.registries().uri("prod")}  # this test's environment
    calm = check(ROOT, "local", **endpoints)
    assert calm.report.enough_data and not calm.report.drifted, calm.report.drifted_features
    assert calm.model["name"] == registered_name("prod", env.model)

    _send(url, np.vstack([rows * 1.3] * 8))  # the sample is uniform: most of it is now shifted
    shifted = check(ROOT, "local", **endpoints)
    assert shifted.report.drifted and shifted.report.share > 0.5
    run_id = record(shifted)
    run = client_for(shifted.registry_uri).get_run(run_id)
    assert run.data.tags["drifted"] == "true" and run.data.metrics["drift_share"] == shifted.report.share

    dev = registered_name("dev", env.model)
    before = len(client_for(shifted.registry_uri).search_model_versions(f"name='{dev}'"))
    version = retrain(ROOT, shifted)
    client = client_for(shifted.registry_uri)
    assert len(client.search_model_versions(f"name='{dev}'")) == before + 1
    tags = client.get_model_version(dev, str(version)).tags
    assert tags["retrain_reason"].startswith("input drift in local")
    assert shifted.next_steps == [f"mlops promote {env.model} --version {version} --to dev"]
    # The new candidate is not served anywhere until it is promoted through the gates.
    assert httpx.post(f"{url}/model", json={}, timeout=10).json()["model_version"] == calm.model["model_version"]

"""Smoke suite (pytest-testinfra): run after every deploy, and here against the local environment.

    pytest tests/smoke --serving-url https://serving.example.com --expected-version 7

Without --serving-url it starts the local environment (SeaweedFS, MLflow, BentoML on 127.0.0.1) and also
checks the host: loopback-only sockets and running processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from apps.serving.smoke import run_smoke, sample_row
from pipelines.common.procs import Proc
from tests.conftest import ensure_running


@dataclass(frozen=True)
class Target:
    serving_url: str
    expected_version: int | None
    local_services: dict[str, Proc]


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest) -> Target:
    url = request.config.getoption("--serving-url")
    expected = request.config.getoption("--expected-version")
    if url:
        return Target(url.rstrip("/"), expected, {})
    env, _ = request.getfixturevalue("local_session")
    services = ensure_running(env)  # as they are now: earlier tests may have restarted one or promoted a new version
    return Target(services["serving"].url, expected or env.champions()["prod"], services)


@pytest.fixture
def local(target: Target) -> dict[str, Proc]:
    """The local servers. Tests using it are marked `local_host` and deselected with --serving-url."""
    assert target.local_services, "host checks need the local environment"
    return target.local_services


def test_smoke_checks_pass(target: Target) -> None:
    result = run_smoke(target.serving_url, expected_version=target.expected_version)
    assert result.passed, [check for check in result.checks if not check[1]]


def test_prediction_is_a_probability(target: Target) -> None:
    response = httpx.post(f"{target.serving_url}/predict", json={"instances": [sample_row()]}, timeout=10)
    assert response.status_code == 200
    assert 0.0 <= response.json()["probabilities"][0] <= 1.0


def test_metrics_expose_the_served_version(target: Target) -> None:
    version = httpx.post(f"{target.serving_url}/model", json={}, timeout=10).json()["model_version"]
    metrics = httpx.get(f"{target.serving_url}/metrics", timeout=10).text
    assert f'model_version="{version}"' in metrics and "model_predictions_total" in metrics


@pytest.mark.local_host
def test_services_listen_on_loopback_only(host: object, local: dict[str, Proc]) -> None:
    for name, proc in local.items():
        assert host.socket(f"tcp://127.0.0.1:{proc.port}").is_listening, name  # type: ignore[attr-defined]
        assert not host.socket(f"tcp://0.0.0.0:{proc.port}").is_listening, f"{name} must not listen on all interfaces"  # type: ignore[attr-defined]


@pytest.mark.local_host
def test_service_processes_run(host: object, local: dict[str, Proc]) -> None:
    for name, proc in local.items():
        process = host.process.get(pid=proc.pid)  # type: ignore[attr-defined]
        assert process.pgid == proc.pid, f"{name} runs in its own process group"


@pytest.mark.local_host
def test_tracking_server_is_healthy(local: dict[str, Proc]) -> None:
    assert httpx.get(f"{local['tracking'].url}/health", timeout=10).text.strip() == "OK"

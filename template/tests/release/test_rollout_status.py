"""`mlops rollout-status`: the verdict on a Rollout's status, and the command following it on a cluster
(kubectl is a stand-in here that answers the statuses Argo Rollouts writes: no API server runs here)."""

from __future__ import annotations

import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from infra.config import load_stack
from infra.k8s import apps, serving
from infra.settings import MonitoringSettings
from pipelines.cli import main
from pipelines.release.rollout import state_of
from tests.conftest import ROOT
from tests.infra.crds import validate_custom


def rollout(status: dict[str, Any], generation: int = 4) -> dict[str, Any]:
    settings = load_stack(ROOT, "prod")
    ctx = apps.AppContext("ns", "prod", {"project": "p"}, "s3://b/mlflow")
    made = serving.serving_objects(
        ctx, settings.serving, "image@sha256:" + "a" * 64, tracking_auth=True, monitoring=MonitoringSettings()
    )
    obj = copy.deepcopy(next(o for o in made if o["kind"] == "Rollout"))
    obj["metadata"]["generation"] = generation
    obj["status"] = status
    validate_custom(obj)  # the status as the CRD describes it
    return obj


HEALTHY = {
    "phase": "Healthy",
    "observedGeneration": "4",
    "stableRS": "7c9f",
    "currentPodHash": "7c9f",
    "currentStepIndex": 6,
}
PROGRESSING = {
    "phase": "Progressing",
    "observedGeneration": "4",
    "stableRS": "5d1a",
    "currentPodHash": "7c9f",
    "currentStepIndex": 1,
}
PAUSED = {
    **PROGRESSING,
    "phase": "Paused",
    "currentStepIndex": 2,
    "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-02T05:00:00Z"}],
}
ABORTED = {
    **PROGRESSING,
    "phase": "Degraded",
    "abort": True,
    "message": 'RolloutAborted: Rollout aborted update to revision 4: Metric "error-ratio" assessed Failed '
    "due to failed (2) > failureLimit (1)",
}
INCONCLUSIVE = {**PAUSED, "pauseConditions": [{"reason": "InconclusiveAnalysis", "startTime": "2026-12-02T05:00:00Z"}]}


@pytest.mark.parametrize(
    ("status", "done", "failed"),
    [
        (HEALTHY, True, False),
        ({**HEALTHY, "observedGeneration": "3"}, False, False),  # the controller has not seen the change yet
        ({**HEALTHY, "stableRS": "5d1a"}, False, False),
        (PROGRESSING, False, False),
        (PAUSED, False, False),  # a canary pause step: it goes on by itself
        (ABORTED, False, True),
        (INCONCLUSIVE, False, True),
    ],
)
def test_the_verdict_on_a_status(status: dict[str, Any], done: bool, failed: bool) -> None:
    state = state_of(rollout(status))
    assert (state.done, state.failed) == (done, failed), state
    assert state.steps == 6  # prod: three weights, each with a pause


def fake_kubectl(tmp_path: Path, statuses: list[dict[str, Any]]) -> Path:
    """A kubectl that answers `get rollout` with the next recorded status, then stays on the last."""
    for index, status in enumerate(statuses):
        (tmp_path / f"status-{index}.json").write_text(json.dumps(rollout(status)))
    script = tmp_path / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        f'n=$(cat "{tmp_path}/count" 2>/dev/null || echo 0)\n'
        f'[ "$n" -lt {len(statuses) - 1} ] && echo $((n + 1)) > "{tmp_path}/count"\n'
        f'cat "{tmp_path}/status-$n.json"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_the_command_follows_a_rollout_to_completion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubectl = fake_kubectl(tmp_path, [PROGRESSING, PAUSED, HEALTHY])
    assert main(["rollout-status", "--env", "local", "--kubectl", str(kubectl), "--interval", "0.1"]) == 0
    said = capsys.readouterr()
    assert "Progressing (step 1/6)" in said.err and "Paused (step 2/6)" in said.err and "Healthy" in said.out


def test_an_aborted_rollout_fails_the_command_naming_the_metric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubectl = fake_kubectl(tmp_path, [PROGRESSING, ABORTED])
    assert main(["rollout-status", "--env", "local", "--kubectl", str(kubectl), "--interval", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "serving's rollout in local did not complete" in err and 'Metric "error-ratio" assessed Failed' in err
    assert "mlops rollback --env local" in err


def test_a_rollout_that_never_finishes_times_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubectl = fake_kubectl(tmp_path, [PROGRESSING])
    arguments = ["rollout-status", "--env", "local", "--kubectl", str(kubectl), "--interval", "0.1", "--timeout", "1"]
    assert main(arguments) == 1
    assert "not finished after 1 s" in capsys.readouterr().err

"""Training on the cluster as data: the CronJob and the Jobs made from it run on the spot pool, retry
interruptions without counting them, fail fast on bad input, are bounded in time, run as the training
identity, and are what the stack plans."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest
from pydantic import ValidationError

from infra.config import load_stack
from infra.k8s import apps, training
from infra.naming import BATCH_TAINT
from infra.settings import TrainingSettings
from pipelines.plan.graph import Plan
from tests.conftest import ROOT
from tests.infra.test_kubernetes import KUBERNETES_VERSION
from tests.planning import PROJECT

IMAGE = "registry.example/training@sha256:" + "c" * 64


def context(s3_endpoint: str | None = None) -> apps.AppContext:
    tags = {"project": PROJECT, "environment": "dev", "owner": "o", "cost-center": "c", "managed-by": "pulumi"}
    return apps.AppContext(PROJECT, "dev", tags, "s3://bucket/mlflow", s3_endpoint=s3_endpoint)


def cronjob(settings: TrainingSettings | None = None, **kwargs: object) -> dict:
    objects = training.training_objects(
        context(), settings or TrainingSettings(), IMAGE, "diagnosis", tracking_auth=True, **kwargs
    )
    return next(o for o in objects if o["kind"] == "CronJob")


def test_the_job_is_on_the_spot_pool_and_interruption_safe() -> None:
    settings = TrainingSettings(deadline_minutes=45, retries=2)
    spec = cronjob(settings)["spec"]["jobTemplate"]["spec"]
    pod = spec["template"]["spec"]
    assert {"key": "workload", "operator": "Equal", "value": BATCH_TAINT["value"], "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    preferred = pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert preferred["preference"]["matchExpressions"] == [{"key": "workload", "operator": "In", "values": ["batch"]}]
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["values"] == [2]
    assert pod["restartPolicy"] == "Never", "a podFailurePolicy requires it"
    assert spec["activeDeadlineSeconds"] == 45 * 60 and spec["backoffLimit"] == 2
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["podReplacementPolicy"] == "Failed"


def test_the_container_is_hardened_and_runs_as_the_training_identity() -> None:
    pod = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == apps.TRAINING and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "2Gi"}
    assert "memory" in container["resources"]["limits"]
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {apps.TRAINING_CREDENTIALS}, "its own MLflow user, never the admin's"


def test_the_arguments_name_the_dataset_store_checkpoint_and_params() -> None:
    settings = TrainingSettings(dataset="customers@3", params={"max_iter": "500", "regularization_c": "0.5"})
    (container,) = cronjob(settings, commit="a" * 40)["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert container["command"] == ["python", "-m", "apps.training"]
    assert args[args.index("--dataset") + 1] == "customers@3"
    assert args[args.index("--store") + 1] == "s3://bucket"
    assert args[args.index("--checkpoint") + 1] == "s3://bucket/checkpoints/training/$(JOB_NAME)"
    assert args[-2:] == ["--param=max_iter=500", "--param=regularization_c=0.5"]
    env = {e["name"]: e for e in container["env"]}
    assert env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == f"metadata.labels['{training.JOB_NAME_LABEL}']"
    assert env["MLOPS_SOURCE_COMMIT"]["value"] == "a" * 40
    default = cronjob()["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert default[default.index("--dataset") + 1] == "diagnosis@latest", "the dataset named like the model"


def test_the_cronjob_is_suspended_unless_scheduled() -> None:
    assert cronjob()["spec"]["suspend"] is True
    scheduled = cronjob(TrainingSettings(scheduled=True, schedule="5 4 * * *"))["spec"]
    assert scheduled["suspend"] is False and scheduled["schedule"] == "5 4 * * *"
    assert scheduled["concurrencyPolicy"] == "Forbid"


def test_a_job_from_the_cronjob_is_its_template_with_other_arguments() -> None:
    source = cronjob()
    before = copy.deepcopy(source)
    job = training.training_job(source, "training-manual-1", ["--dataset", "other@2"])
    assert source == before, "the CronJob is not changed"
    assert job["metadata"]["name"] == "training-manual-1" and job["metadata"]["namespace"] == PROJECT
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["--dataset", "other@2"]
    assert job["spec"]["podFailurePolicy"] == source["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]
    same = training.training_job(source, "training-manual-2")
    assert same["spec"] == source["spec"]["jobTemplate"]["spec"]


@pytest.mark.parametrize("endpoint", [None, "http://minio:9000"])
def test_the_objects_are_strictly_valid_kubernetes(endpoint: str | None) -> None:
    objects = training.training_objects(
        context(endpoint), TrainingSettings(params={"max_iter": "9"}), IMAGE, "diagnosis", tracking_auth=True
    )
    objects.append(training.training_job(objects[-1], "training-manual-1", ["--dataset", "x@1"]))
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(objects[-1])
    broken["spec"]["podFailurePolicy"]["rules"][0]["onPodCondition"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_stacks_schedule_dev_only_and_refuse_bad_settings() -> None:
    assert load_stack(ROOT, "dev").training.scheduled is True
    assert not any(load_stack(ROOT, stack).training.scheduled for stack in ("staging", "prod", "local"))
    for field, value in (("dataset", "Bad Name@x"), ("schedule", "every day"), ("deadline_minutes", 1)):
        with pytest.raises(ValidationError, match=field):
            TrainingSettings.model_validate({field: value})


@pytest.mark.parametrize("stack", ["local", "dev", "prod"])
def test_every_stack_with_a_cluster_plans_the_cronjob(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    settings = load_stack(ROOT, stack)
    jobs = [r for r in plan.of_type("kubernetes:batch/v1:CronJob") if r.inputs["metadata"]["name"] == "training"]
    assert len(jobs) == len(plan.clouds) or (stack == "local" and len(jobs) == 1)
    for job in jobs:
        assert job.inputs["spec"]["suspend"] is not settings.training.scheduled
        (container,) = job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert "/training@sha256:" in container["image"]
    accounts = [
        r for r in plan.of_type("kubernetes:core/v1:ServiceAccount") if r.inputs["metadata"]["name"] == "training"
    ]
    assert len(accounts) == len(jobs)

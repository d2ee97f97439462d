"""Training on the cluster: the `training` CronJob (scheduled retraining, suspended unless
`training.scheduled`) whose job template is also what `mlops train --on-cluster` submits, so a Job made by
hand runs exactly what the stack deployed. On the spot pool, interruption-safe: a pod disruption
(`DisruptionTarget`) is retried without counting, bad input (exit 2) fails the Job at once, a retried pod
resumes from the run's checkpoint in the bucket (`--checkpoint`), and the deadline bounds it all.
"""

from __future__ import annotations

from typing import Any

from infra.k8s.apps import (
    TRAINING,
    TRAINING_CREDENTIALS,
    TRAINING_EXPERIMENT,
    AppContext,
    object_store_access,
    service_account,
    tracking_credentials,
)
from infra.k8s.objects import (
    Obj,
    container_security,
    env_var,
    metadata,
    pod_security,
    resources,
    scratch_volume,
    spot_placement,
)
from infra.naming import BATCH_TAINT
from infra.settings import TrainingSettings

# The label Kubernetes puts on a Job's pods (1.27+); the pod reads it to name its checkpoint.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# apps.training's exit code for bad input (core/errors.py EXIT_BAD_INPUT): retrying cannot help.
BAD_INPUT_EXIT_CODE = 2
MODULE = ["python", "-m", "apps.training"]


def store_uri(artifacts_uri: Any) -> Any:
    """The stack's dataset store: the bucket of the tracking server's artifacts (`<bucket>/mlflow`)."""
    if isinstance(artifacts_uri, str):
        return artifacts_uri.rsplit("/", 1)[0]
    return artifacts_uri.apply(lambda uri: uri.rsplit("/", 1)[0])


def training_args(training: TrainingSettings, model: str, store: Any, tracking_uri: str) -> list[Any]:
    """The arguments of `python -m apps.training` in the Job (`--on-cluster` may replace dataset and params)."""
    args: list[Any] = ["--registered-model", model, "--dataset", training.dataset or f"{model}@latest"]
    args += ["--store", store, "--tracking-uri", tracking_uri, "--experiment", TRAINING_EXPERIMENT]
    args += ["--checkpoint", _join(store, "checkpoints/training/$(JOB_NAME)")]
    args += [f"--param={key}={value}" for key, value in sorted(training.params.items())]
    return args


def _join(store: Any, path: str) -> Any:
    if isinstance(store, str):
        return f"{store}/{path}"
    return store.apply(lambda uri: f"{uri}/{path}")


def job_spec(
    ctx: AppContext, training: TrainingSettings, image: Any, model: str, *, tracking_auth: bool, commit: str | None
) -> Obj:
    """The Job spec of one training run (the CronJob's template and what `--on-cluster` submits)."""
    labels = ctx.labels(TRAINING)
    files = tracking_credentials(tracking_auth, TRAINING_CREDENTIALS)
    store_env, store_files = object_store_access(ctx)
    env = [
        env_var("HOME", "/tmp"),
        env_var("MLFLOW_DISABLE_TELEMETRY", "true"),
        {"name": "JOB_NAME", "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{JOB_NAME_LABEL}']"}}},
        *store_env,
    ]
    if commit:
        env.append(env_var("MLOPS_SOURCE_COMMIT", commit))  # the lineage's git_sha (the image has no .git)
    mounted = [*files, *store_files]
    container = {
        "name": TRAINING,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": MODULE,
        "args": training_args(training, model, store_uri(ctx.artifacts_uri), ctx.tracking_uri()),
        "env": env,
        "resources": resources(training.cpu, training.memory),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mount for mount, _ in mounted)],
    }
    pod = {
        "serviceAccountName": TRAINING,
        "automountServiceAccountToken": False,  # it calls MLflow and the bucket, never the Kubernetes API
        "securityContext": pod_security(10001),
        "restartPolicy": "Never",  # a podFailurePolicy needs it; a failed pod is replaced by a new one
        **spot_placement(BATCH_TAINT["key"], BATCH_TAINT["value"]),
        "containers": [container],
        "volumes": [scratch_volume("tmp", "4Gi"), *(volume for _, volume in mounted)],
    }
    return {
        "backoffLimit": training.retries,
        "activeDeadlineSeconds": training.deadline_minutes * 60,
        "ttlSecondsAfterFinished": 7 * 86_400,
        "podReplacementPolicy": "Failed",  # never two pods of one run at once (both would write the checkpoint)
        "podFailurePolicy": {
            "rules": [
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": TRAINING, "operator": "In", "values": [BAD_INPUT_EXIT_CODE]},
                },
            ]
        },
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }


def training_objects(
    ctx: AppContext,
    training: TrainingSettings,
    image: Any,
    model: str,
    *,
    tracking_auth: bool,
    commit: str | None = None,
) -> list[Obj]:
    """The `training` service account (bound to the cloud's training identity) and the CronJob."""
    labels = ctx.labels(TRAINING)
    spec = job_spec(ctx, training, image, model, tracking_auth=tracking_auth, commit=commit)
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(TRAINING, ctx.namespace, labels),
        "spec": {
            "schedule": training.schedule,
            "timeZone": "Etc/UTC",
            "suspend": not training.scheduled,  # still the template `mlops train --on-cluster` submits
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"metadata": {"labels": labels}, "spec": spec},
        },
    }
    return [service_account(ctx, TRAINING), cronjob]


def training_job(cronjob: Obj, name: str, args: list[str] | None = None) -> Obj:
    """A Job made from the deployed CronJob's template, as `kubectl create job --from=cronjob/training` makes
    it (`args` replaces the container's arguments: another dataset or params)."""
    template = cronjob["spec"]["jobTemplate"]
    spec = dict(template["spec"])
    if args is not None:
        pod = dict(spec["template"]["spec"])
        pod["containers"] = [dict(c, args=args) if c["name"] == TRAINING else c for c in pod["containers"]]
        spec["template"] = {**spec["template"], "spec": pod}
    meta = cronjob["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(template.get("metadata", {}).get("labels", {})),
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
        },
        "spec": spec,
    }

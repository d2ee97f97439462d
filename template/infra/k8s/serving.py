"""The serving app's Kubernetes objects: the BentoML workload of the pinned model version (a Rollout with
its canary analysis, `infra/k8s/rollout.py`, or a plain Deployment when `serving.canary.enabled` is
false), its monitoring settings, and the drift CronJob on the batch pool.
"""

from __future__ import annotations

from typing import Any

from infra.k8s import rollout
from infra.k8s.apps import (
    CREDENTIALS_KEY,
    DRIFT,
    DRIFT_CREDENTIALS,
    SERVING,
    SERVING_CREDENTIALS,
    SERVING_PORT,
    AppContext,
    app_deployment,
    service_account,
    system_pod,
)
from infra.k8s.objects import (
    Obj,
    cluster_service,
    container_security,
    disruption_budget,
    env_var,
    http_probe,
    metadata,
    pod_security,
    resources,
    scratch_volume,
    secret_files,
)
from infra.naming import BATCH_TAINT
from infra.settings import MonitoringSettings, ServingSettings


def monitoring_env(monitoring: MonitoringSettings) -> list[Obj]:
    """The serving app's sampling and drift settings, from the stack's monitoring section."""
    return [
        env_var("DRIFT_SAMPLE_ROWS", str(monitoring.drift_sample_rows)),
        env_var("DRIFT_WINDOW_SECONDS", str(monitoring.drift_window_minutes * 60)),
        env_var("DRIFT_ALPHA", f"{monitoring.drift_alpha:g}"),
        env_var("DRIFT_THRESHOLD", f"{monitoring.drift_threshold:g}"),
    ]


def _tracking_credentials(tracking_auth: bool, credentials: str = SERVING_CREDENTIALS) -> list[tuple[Obj, Obj]]:
    """The app's own MLflow user (made by the tracking server's users Job), never the admin: its
    ~/.mlflow/credentials file (HOME is /tmp; the Secret is mounted inside the scratch volume)."""
    if not tracking_auth:
        return []
    return [secret_files("mlflow-credentials", credentials, "/tmp/.mlflow", [CREDENTIALS_KEY])]


def serving_objects(
    ctx: AppContext,
    serving: ServingSettings,
    image: Any,
    *,
    tracking_auth: bool,
    monitoring: MonitoringSettings | None = None,
) -> list[Obj]:
    """BentoML serving of the pinned model version: Deployment, Service, HPA, PDB.

    One worker per pod (the benchmark's best setting on small nodes: a second worker only competes
    for the same cores); the HPA adds pods at 70 % CPU."""
    labels = ctx.labels(SERVING)
    model = serving.model
    env = [
        env_var("MLFLOW_TRACKING_URI", ctx.tracking_uri()),
        env_var("MODEL_NAME", f"{ctx.environment}.{model.name}"),
        env_var("SERVING_ENVIRONMENT", ctx.environment),
        env_var("MAX_BATCH_ROWS", str(serving.max_batch_rows)),
        env_var("SERVING_WORKERS", str(serving.workers)),
        env_var("SERVING_ACCESS_LOG", "false"),
        *monitoring_env(monitoring or MonitoringSettings()),
        env_var("BENTOML_DO_NOT_TRACK", "true"),
        env_var("MLFLOW_DISABLE_TELEMETRY", "true"),
        env_var("HOME", "/tmp"),
        env_var("BENTOML_HOME", "/tmp/bentoml"),
    ]
    if model.version is not None:
        env.insert(2, env_var("MODEL_VERSION", str(model.version)))
    if serving.shadow is not None:  # scored beside the served version, answering nothing (apps/serving/shadow.py)
        env.append(env_var("SHADOW_MODEL_VERSION", str(serving.shadow.version)))
        env.append(env_var("SHADOW_SAMPLE_PCT", f"{serving.shadow.sample_pct:g}"))
    files = _tracking_credentials(tracking_auth)
    container = {
        "name": SERVING,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": SERVING_PORT}],
        "env": env,
        "resources": resources(serving.cpu, serving.memory),
        "securityContext": container_security(),
        "startupProbe": http_probe("/readyz", "http", 5, 36),
        "readinessProbe": http_probe("/readyz", "http", 5, 3),
        "livenessProbe": http_probe("/livez", "http", 15, 3),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mount for mount, _ in files)],
    }
    pod = system_pod(SERVING, [container], [scratch_volume("tmp", "2Gi"), *(volume for _, volume in files)])
    # The pinned version is visible on the pods, so `kubectl get pods -L` shows what each one serves.
    version = str(model.version) if model.version is not None else "unpinned"
    annotations = {"mlops/model": f"{ctx.environment}.{model.name}", "mlops/model-version": version}
    if serving.shadow is not None:
        annotations["mlops/shadow-version"] = str(serving.shadow.version)
    deployment = app_deployment(ctx, SERVING, pod, None, annotations)
    workload: list[Obj] = [deployment]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVING}
    if serving.canary.enabled:  # the same pod template, rolled out step by step (infra/k8s/rollout.py)
        canary = serving.canary
        workload = [
            rollout.analysis_template(
                ctx.namespace, labels, monitoring or MonitoringSettings(), canary, shadow=serving.shadow is not None
            ),
            rollout.rollout(ctx.namespace, labels, deployment["spec"]["template"], canary),
        ]
        target = {"apiVersion": rollout.API_VERSION, "kind": "Rollout", "name": SERVING}
    autoscaler = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(SERVING, ctx.namespace, labels),
        "spec": {
            "scaleTargetRef": target,
            "minReplicas": max(1, serving.min_replicas),
            "maxReplicas": serving.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }
    return [
        service_account(ctx, SERVING),
        *workload,
        cluster_service(SERVING, ctx.namespace, labels, SERVING_PORT),
        autoscaler,
        disruption_budget(SERVING, ctx.namespace, labels),
    ]


def drift_cronjob(
    ctx: AppContext, monitoring: MonitoringSettings, image: Any, *, tracking_auth: bool, fail_on_drift: bool = True
) -> Obj:
    """`mlops drift` on the stack's schedule, on the spot pool (tolerates its taint, prefers its nodes),
    as the serving identity (it reads the served version's artifacts). The check is recorded as a run
    in the `drift` experiment; a drifted sample fails the Job, which kube-prometheus-stack alerts on."""
    labels = ctx.labels(DRIFT)
    serving_url = f"http://{SERVING}.{ctx.namespace}.svc.cluster.local:{SERVING_PORT}"
    command = ["mlops", "drift", "--env", ctx.environment, "--serving-url", serving_url]
    command += ["--registry-uri", ctx.tracking_uri(), "--record", "--format", "json"]
    if fail_on_drift:
        command.append("--fail-on-drift")
    files = _tracking_credentials(tracking_auth, DRIFT_CREDENTIALS)
    container = {
        "name": DRIFT,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "env": [env_var("HOME", "/tmp"), env_var("MLFLOW_DISABLE_TELEMETRY", "true")],
        "resources": resources("250m", "512Mi"),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *(mount for mount, _ in files)],
    }
    pod = {
        "serviceAccountName": SERVING,
        "automountServiceAccountToken": False,  # it calls MLflow and serving, never the Kubernetes API
        "securityContext": pod_security(10001),
        "restartPolicy": "Never",
        "tolerations": [
            {"key": BATCH_TAINT["key"], "operator": "Equal", "value": BATCH_TAINT["value"], "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "preference": {
                            "matchExpressions": [
                                {"key": "workload", "operator": "In", "values": [BATCH_TAINT["value"]]}
                            ]
                        },
                    }
                ]
            }
        },
        "containers": [container],
        "volumes": [scratch_volume("tmp", "1Gi"), *(volume for _, volume in files)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(DRIFT, ctx.namespace, labels),
        "spec": {
            "schedule": monitoring.drift_schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels},
                "spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": 900,
                    "ttlSecondsAfterFinished": 86_400,
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                },
            },
        },
    }

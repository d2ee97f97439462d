"""The tracking server's Kubernetes objects: MLflow with its auth config, Postgres (in-cluster or
external) and, for the local stack, MinIO as its object store.
"""

from __future__ import annotations

from typing import Any

from infra.k8s.apps import (
    ADMIN_CREDENTIALS,
    AUTH_DATABASE,
    AUTH_SECRET,
    DB_SECRET,
    DRIFT_CREDENTIALS,
    DRIFT_EXPERIMENT,
    EXTERNAL_DB_SECRET,
    MINIO,
    MINIO_SECRET,
    POSTGRES,
    POSTGRES_UID,
    SERVING_CREDENTIALS,
    TRACKING,
    TRACKING_PORT,
    USERS_JOB,
    AppContext,
    app_deployment,
    object_store_env,
    service_account,
    system_pod,
)
from infra.k8s.objects import (
    APP_LABEL,
    MINIO_CLIENT_IMAGE,
    MINIO_IMAGE,
    POSTGRES_IMAGE,
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
    secret_env,
)
from infra.settings import TrackingSettings


def auth_config(admin_password: str, database_uri: str) -> str:
    """MLflow's basic-auth configuration: new users read only, the admin password is generated."""
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        "admin_username = admin\n"
        f"admin_password = {admin_password}\n"
    )


def database_uri(tracking: TrackingSettings, namespace: str, database: str = "mlflow") -> str:
    """The password is not in the URI: libpq reads it from PGPASSWORD."""
    host = tracking.external_database_host or f"{POSTGRES}.{namespace}.svc.cluster.local"
    return f"postgresql://mlflow@{host}:5432/{database}"


def tracking_objects(ctx: AppContext, tracking: TrackingSettings, image: Any) -> list[Obj]:
    """MLflow tracking server + registry: Deployment, Service, PDB (secrets are built by the component)."""
    labels = ctx.labels(TRACKING)
    db_secret = EXTERNAL_DB_SECRET if tracking.database == "external" else DB_SECRET
    command = [
        "mlflow",
        "server",
        "--host=0.0.0.0",
        f"--port={TRACKING_PORT}",
        "--workers=2",
        f"--backend-store-uri={database_uri(tracking, ctx.namespace)}",
        "--serve-artifacts",
        "--artifacts-destination",
        ctx.artifacts_uri,
    ]
    if tracking.auth:
        command.append("--app-name=basic-auth")
    env = [
        env_var("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
        env_var("MLFLOW_DISABLE_TELEMETRY", "true"),
        env_var("HOME", "/tmp"),
        secret_env("PGPASSWORD", db_secret, "password"),
        *object_store_env(ctx),
    ]
    mounts: list[Obj] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes = [scratch_volume("tmp", "1Gi")]
    if tracking.auth:
        env += [
            env_var("MLFLOW_AUTH_CONFIG_PATH", "/etc/mlflow/auth.ini"),
            secret_env("MLFLOW_FLASK_SERVER_SECRET_KEY", AUTH_SECRET, "flask-secret-key"),
        ]
        mounts.append({"name": "auth", "mountPath": "/etc/mlflow", "readOnly": True})
        volumes.append(
            {"name": "auth", "secret": {"secretName": AUTH_SECRET, "items": [{"key": "auth.ini", "path": "auth.ini"}]}}
        )
    container = {
        "name": TRACKING,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": command,
        "ports": [{"name": "http", "containerPort": TRACKING_PORT}],
        "env": env,
        "resources": resources(tracking.cpu, tracking.memory),
        "securityContext": container_security(),
        "startupProbe": http_probe("/health", "http", 5, 24),
        "readinessProbe": http_probe("/health", "http", 10, 3),
        "livenessProbe": http_probe("/health", "http", 20, 3),
        "volumeMounts": mounts,
    }
    return [
        service_account(ctx, TRACKING),
        app_deployment(ctx, TRACKING, system_pod(TRACKING, [container], volumes), 1, {}),
        cluster_service(TRACKING, ctx.namespace, labels, TRACKING_PORT),
        disruption_budget(TRACKING, ctx.namespace, labels),
    ]


def one_shot_job(
    ctx: AppContext, name: str, labels: dict[str, str], container: Obj, volumes: list[Obj], **spec: int
) -> Obj:
    """A Job of one non-root container that retries until it succeeds and never sees the Kubernetes API."""
    pod = {
        "restartPolicy": "OnFailure",
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": volumes,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(name, ctx.namespace, labels),
        "spec": {**spec, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def users_job(ctx: AppContext, image: Any) -> Obj:
    """Makes the app users through MLflow's auth API once the server answers (apps/tracking/users.py);
    re-run on every change of the image (a Job is replaced, not changed) and idempotent."""
    labels = ctx.labels(USERS_JOB)
    credentials = {"admin": ADMIN_CREDENTIALS, "serving": SERVING_CREDENTIALS, "drift": DRIFT_CREDENTIALS}
    container = {
        "name": USERS_JOB,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [
            "python",
            "-m",
            "apps.tracking.users",
            f"--tracking-uri={ctx.tracking_uri()}",
            "--admin=/etc/mlflow-users/admin",
            "--user=/etc/mlflow-users/serving",
            f"--user=/etc/mlflow-users/drift:{DRIFT_EXPERIMENT}",
        ],
        "env": [env_var("HOME", "/tmp"), env_var("MLFLOW_DISABLE_TELEMETRY", "true")],
        "resources": resources("100m", "256Mi"),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            *({"name": name, "mountPath": f"/etc/mlflow-users/{name}", "readOnly": True} for name in credentials),
        ],
    }
    volumes = [
        scratch_volume("tmp"),
        *({"name": name, "secret": {"secretName": secret}} for name, secret in credentials.items()),
    ]
    return one_shot_job(ctx, USERS_JOB, labels, container, volumes, backoffLimit=6, activeDeadlineSeconds=900)


def postgres_objects(ctx: AppContext, tracking: TrackingSettings) -> list[Obj]:
    """A single-instance Postgres StatefulSet on a persistent volume (use `external` for a managed database)."""
    labels = ctx.labels(POSTGRES)
    init_sql = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("postgres-init", ctx.namespace, labels),
        "data": {"auth.sql": f"CREATE DATABASE {AUTH_DATABASE} OWNER mlflow;\n"},
    }
    container = {
        "name": POSTGRES,
        "image": POSTGRES_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "postgres", "containerPort": 5432}],
        "env": [
            env_var("POSTGRES_USER", "mlflow"),
            env_var("POSTGRES_DB", "mlflow"),
            env_var("PGDATA", "/var/lib/postgresql/data/pgdata"),
            secret_env("POSTGRES_PASSWORD", DB_SECRET, "password"),
        ],
        "resources": resources("250m", "512Mi"),
        "securityContext": container_security(POSTGRES_UID),
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "mlflow"]}, "periodSeconds": 10},
        "livenessProbe": {
            "exec": {"command": ["pg_isready", "-U", "mlflow"]},
            "periodSeconds": 30,
            "failureThreshold": 5,
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
        ],
    }
    claim: Obj = {
        "metadata": {"name": "data", "labels": labels},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": f"{tracking.database_storage_gb}Gi"}},
        },
    }
    if ctx.storage_class:
        claim["spec"]["storageClassName"] = ctx.storage_class
    pod = {
        "securityContext": pod_security(POSTGRES_UID),
        "automountServiceAccountToken": False,
        "nodeSelector": {"workload": "system"},
        "containers": [container],
        "volumes": [
            scratch_volume("run", "16Mi"),
            scratch_volume("tmp"),
            {"name": "init", "configMap": {"name": "postgres-init"}},
        ],
    }
    stateful_set = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(POSTGRES, ctx.namespace, labels),
        "spec": {
            "serviceName": POSTGRES,
            "replicas": 1,
            "selector": {"matchLabels": {APP_LABEL: POSTGRES}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
            "volumeClaimTemplates": [claim],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
        },
    }
    return [init_sql, stateful_set, cluster_service(POSTGRES, ctx.namespace, labels, 5432, headless=True)]


def minio_objects(ctx: AppContext, bucket: str, storage_gb: int = 20) -> list[Obj]:
    """MinIO as the local stack's object store, plus a Job that creates the artifact bucket."""
    labels = ctx.labels(MINIO)
    credentials = [
        secret_env("MINIO_ROOT_USER", MINIO_SECRET, "user"),
        secret_env("MINIO_ROOT_PASSWORD", MINIO_SECRET, "password"),
    ]
    claim: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(MINIO, ctx.namespace, labels),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{storage_gb}Gi"}}},
    }
    if ctx.storage_class:
        claim["spec"]["storageClassName"] = ctx.storage_class
    container = {
        "name": MINIO,
        "image": MINIO_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["server", "/data"],
        "ports": [{"name": "http", "containerPort": 9000}],
        "env": credentials,
        "resources": resources("250m", "512Mi"),
        "securityContext": container_security(),
        "readinessProbe": http_probe("/minio/health/ready", "http", 10, 3),
        "livenessProbe": http_probe("/minio/health/live", "http", 20, 3),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod = {
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": MINIO}}, scratch_volume("tmp")],
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(MINIO, ctx.namespace, labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {APP_LABEL: MINIO}},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }
    make_bucket = {
        "name": "make-bucket",
        "image": MINIO_CLIENT_IMAGE,
        "command": ["/bin/sh", "-c"],
        "args": [
            f'mc alias set local http://{MINIO}:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" '
            f"&& mc mb --ignore-existing local/{bucket}"
        ],
        "env": [*credentials, env_var("MC_CONFIG_DIR", "/tmp/mc")],
        "resources": resources("100m", "128Mi"),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    job = one_shot_job(
        ctx,
        "minio-make-bucket",
        labels,
        make_bucket,
        [scratch_volume("tmp")],
        backoffLimit=10,
        ttlSecondsAfterFinished=3600,
    )
    return [claim, deployment, cluster_service(MINIO, ctx.namespace, labels, 9000), job]

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
    SERVING_CREDENTIALS,
    TRACKING,
    TRACKING_PORT,
    USERS_JOB,
    AppContext,
    app_deployment,
    object_store_access,
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
    secret_files,
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


# Where the pods find their Secrets' files.
DATABASE_DIR = "/etc/mlflow-database"
AUTH_DIR = "/etc/mlflow"
POSTGRES_FILES = "/etc/postgres"
MINIO_ROOT_FILES = "/etc/minio-root"


def client_credentials(username: str, password: str) -> str:
    """An app user's ~/.mlflow/credentials, the file MLflow's clients read when no variable is set."""
    return f"[mlflow]\nmlflow_tracking_username = {username}\nmlflow_tracking_password = {password}\n"


def object_store_credentials(user: str, password: str) -> str:
    """MinIO's key as boto3's shared-credentials file (AWS_SHARED_CREDENTIALS_FILE)."""
    return f"[default]\naws_access_key_id = {user}\naws_secret_access_key = {password}\n"


def launched(secrets: dict[str, str], command: list[Any]) -> list[Any]:
    """`command` started by apps/tracking/launch.py with each variable read from its Secret's file."""
    flags = [f"--secret={name}={path}" for name, path in secrets.items()]
    return ["python", "-m", "apps.tracking.launch", *flags, "--", *command]


def database_uri(tracking: TrackingSettings, namespace: str, database: str = "mlflow") -> str:
    """The password is not in the URI: libpq reads it from PGPASSWORD (set from a file by the launcher)."""
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
    store_env, files = object_store_access(ctx)
    env = [
        env_var("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
        env_var("MLFLOW_DISABLE_TELEMETRY", "true"),
        env_var("HOME", "/tmp"),
        *store_env,
    ]
    files.append(secret_files("database", db_secret, DATABASE_DIR, ["password"]))
    secrets = {"PGPASSWORD": f"{DATABASE_DIR}/password"}
    if tracking.auth:
        command.append("--app-name=basic-auth")
        env.append(env_var("MLFLOW_AUTH_CONFIG_PATH", f"{AUTH_DIR}/auth.ini"))
        files.append(secret_files("auth", AUTH_SECRET, AUTH_DIR, ["auth.ini", "flask-secret-key"]))
        secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"] = f"{AUTH_DIR}/flask-secret-key"
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, *(mount for mount, _ in files)]
    volumes = [scratch_volume("tmp", "1Gi"), *(volume for _, volume in files)]
    container = {
        "name": TRACKING,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": launched(secrets, command),
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
    files = [
        secret_files(name, secret, f"/etc/mlflow-users/{name}", ["username", "password"])
        for name, secret in credentials.items()
    ]
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
            *(mount for mount, _ in files),
        ],
    }
    volumes = [scratch_volume("tmp"), *(volume for _, volume in files)]
    return one_shot_job(ctx, USERS_JOB, labels, container, volumes, backoffLimit=6, activeDeadlineSeconds=900)


def postgres_objects(ctx: AppContext, tracking: TrackingSettings) -> list[Obj]:
    """A single-instance Postgres StatefulSet on a persistent volume (use `external` for a managed database)."""
    labels = ctx.labels(POSTGRES)
    password_mount, password_volume = secret_files("password", DB_SECRET, POSTGRES_FILES, ["password"])
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
            env_var("POSTGRES_PASSWORD_FILE", f"{POSTGRES_FILES}/password"),  # the image's `_FILE` form
        ],
        "resources": resources("250m", "512Mi"),
        # The official image runs as any UID: its entrypoint gives initdb a passwd entry through
        # nss_wrapper (files in /tmp), and the data directory belongs to whoever made it.
        "securityContext": container_security(),
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
            password_mount,
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
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,
        "nodeSelector": {"workload": "system"},
        "containers": [container],
        "volumes": [
            scratch_volume("run", "16Mi"),
            scratch_volume("tmp"),
            {"name": "init", "configMap": {"name": "postgres-init"}},
            password_volume,
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
    root_mount, root_volume = secret_files("root", MINIO_SECRET, MINIO_ROOT_FILES, ["user", "password"])
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
        "env": [  # MinIO reads an absolute path as it is (else relative to /run/secrets)
            env_var("MINIO_ROOT_USER_FILE", f"{MINIO_ROOT_FILES}/user"),
            env_var("MINIO_ROOT_PASSWORD_FILE", f"{MINIO_ROOT_FILES}/password"),
        ],
        "resources": resources("250m", "512Mi"),
        "securityContext": container_security(),
        "readinessProbe": http_probe("/minio/health/ready", "http", 10, 3),
        "livenessProbe": http_probe("/minio/health/live", "http", 20, 3),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}, root_mount],
    }
    pod = {
        "securityContext": pod_security(),
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": MINIO}},
            scratch_volume("tmp"),
            root_volume,
        ],
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
            f'mc alias set local http://{MINIO}:9000 "$(cat {MINIO_ROOT_FILES}/user)" '
            f'"$(cat {MINIO_ROOT_FILES}/password)" && mc mb --ignore-existing local/{bucket}'
        ],
        "env": [env_var("MC_CONFIG_DIR", "/tmp/mc")],
        "resources": resources("100m", "128Mi"),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, root_mount],
    }
    job = one_shot_job(
        ctx,
        "minio-make-bucket",
        labels,
        make_bucket,
        [scratch_volume("tmp"), root_volume],
        backoffLimit=10,
        ttlSecondsAfterFinished=3600,
    )
    return [claim, deployment, cluster_service(MINIO, ctx.namespace, labels, 9000), job]

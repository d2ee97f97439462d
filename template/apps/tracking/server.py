"""The `mlflow server` command line and environment, in one place for every way the server is started."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# One worker and no background job runner: ~0.5 GB instead of ~2.2 GB, enough for a team's registry.
SERVER_ENV: Mapping[str, str] = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def server_command(mlflow: str | Path, host: str, port: int, backend_store_uri: str, artifact_root: str) -> list[str]:
    """Clients read and write artifacts directly in `artifact_root` (S3/GCS/MinIO/a directory), with their own
    identity (IRSA / Workload Identity in the cloud), so the server does not proxy artifacts."""
    return [
        str(mlflow),
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend_store_uri,
        "--default-artifact-root",
        artifact_root,
        "--no-serve-artifacts",
    ]

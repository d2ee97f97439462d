"""The local S3-compatible object store (moto on loopback): buckets per environment, kept across restarts.

moto keeps objects in memory, so `mlops local down` snapshots the buckets to `.mlops/local/objects/`
and the next `up` restores them: the registry (SQLite) and its artifacts stay consistent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.settings import PROMOTION_ORDER

ENVIRONMENTS = tuple(e.value for e in PROMOTION_ORDER)


def client_env(port: int) -> dict[str, str]:
    """What any client of the local store needs. The key values are placeholders moto accepts; they are
    not credentials of any cloud (the local store has no authentication)."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "local-object-store",
        "AWS_SECRET_ACCESS_KEY": "local-object-store",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def bucket(prefix: str, environment: str) -> str:
    return f"{prefix}-{environment}"


def s3_client(port: int) -> Any:
    import boto3  # noqa: PLC0415

    env = client_env(port)
    return boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def ensure_buckets(port: int, prefix: str) -> list[str]:
    s3 = s3_client(port)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    names = [bucket(prefix, env) for env in ENVIRONMENTS]
    for name in names:
        if name not in existing:
            s3.create_bucket(Bucket=name)
    return names


def snapshot(port: int, prefix: str, directory: Path) -> int:
    """Copy every object of the environment buckets to `directory`; returns the number of objects."""
    s3 = s3_client(port)
    count = 0
    for name in (bucket(prefix, env) for env in ENVIRONMENTS):
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            for item in page.get("Contents", []):
                target = directory / name / item["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(name, item["Key"], str(target))
                count += 1
    return count


def restore(port: int, directory: Path) -> int:
    """Upload a snapshot made by `snapshot` into a fresh store; returns the number of objects."""
    if not directory.is_dir():
        return 0
    s3 = s3_client(port)
    count = 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name, key = path.relative_to(directory).parts[0], "/".join(path.relative_to(directory).parts[1:])
        s3.upload_file(str(path), name, key)
        count += 1
    return count

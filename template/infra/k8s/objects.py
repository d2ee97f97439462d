"""Kubernetes objects as plain data (the API's own camelCase shape): built here, checked by tests and policies.

Values that are only known during a deployment (a bucket name, a role ARN, a generated password)
are passed in as Pulumi outputs and only placed, never parsed, so the same builders serve tests
(plain strings, validated against the Kubernetes schema) and the program.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Obj = dict[str, Any]

# Third-party images by tag and digest (the digest is what runs; the tag says which release it is) and
# the chart, pinned. Dependabot cannot see these: bump them deliberately. The image policy allows
# exactly these repositories besides the stack's own registries.
POSTGRES_IMAGE = (
    "docker.io/library/postgres:17.6@sha256:00bc86618629af00d2937fdc5a5d63db3ff8450acf52f0636ec813c7f4902929"
)
MINIO_IMAGE = (
    "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z"
    "@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e"
)
MINIO_CLIENT_IMAGE = (
    "quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z"
    "@sha256:a7fe349ef4bd8521fb8497f55c6042871b2ae640607cf99d9bede5e9bdf11727"
)
PROMETHEUS_STACK_CHART = "kube-prometheus-stack"
PROMETHEUS_STACK_VERSION = "75.15.0"
PROMETHEUS_STACK_REPO = "https://prometheus-community.github.io/helm-charts"

APP_LABEL = "app.kubernetes.io/name"
NONROOT_UID = 10001


def metadata(name: str, namespace: str | None, labels: dict[str, str], **extra: Any) -> Obj:
    meta: Obj = {"name": name, "labels": dict(labels)}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update({key: value for key, value in extra.items() if value})
    return meta


def app_labels(tags: dict[str, str], app: str) -> dict[str, str]:
    """The stack's tags plus the app's name: every object carries both."""
    return {**tags, APP_LABEL: app, "app.kubernetes.io/part-of": tags["project"]}


def container_security(uid: int = NONROOT_UID) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security(uid: int = NONROOT_UID) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def resources(cpu: str, memory: str) -> Obj:
    """Requests = limits for memory (no OOM surprises); CPU may burst to twice the request."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": _double(cpu), "memory": memory}}


def _double(cpu: str) -> str:
    if cpu.endswith("m"):
        return f"{int(float(cpu[:-1]) * 2)}m"
    return f"{int(float(cpu) * 2000)}m"


def http_probe(path: str, port: str, period: int, failures: int) -> Obj:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures}


def env_var(name: str, value: Any) -> Obj:
    return {"name": name, "value": value}


def secret_files(volume: str, secret: str, directory: str, keys: Sequence[str]) -> tuple[Obj, Obj]:
    """(mount, volume): the Secret's `keys` as read-only files in `directory`, readable by the pod's group
    (its fsGroup) only. Secrets reach containers as files, never as environment variables."""
    mount = {"name": volume, "mountPath": directory, "readOnly": True}
    items = [{"key": key, "path": key} for key in keys]
    return mount, {"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440, "items": items}}


def scratch_volume(name: str, size: str = "256Mi") -> Obj:
    return {"name": name, "emptyDir": {"sizeLimit": size}}


def secret(name: str, namespace: str, labels: dict[str, str], string_data: dict[str, Any]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(name, namespace, labels),
        "type": "Opaque",
        "stringData": string_data,
    }


def cluster_service(name: str, namespace: str, labels: dict[str, str], port: int, *, headless: bool = False) -> Obj:
    spec: Obj = {
        "type": "ClusterIP",
        "selector": {APP_LABEL: labels[APP_LABEL]},
        "ports": [
            {"name": "http" if port != 5432 else "postgres", "port": port, "targetPort": port, "protocol": "TCP"}
        ],
    }
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(name, namespace, labels), "spec": spec}


def disruption_budget(name: str, namespace: str, labels: dict[str, str]) -> Obj:
    """One pod at a time may be evicted: node drains and upgrades proceed, capacity never drops to zero."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(name, namespace, labels),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {APP_LABEL: labels[APP_LABEL]}}},
    }

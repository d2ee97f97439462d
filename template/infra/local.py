"""The `local` stack: the apps on an existing Kubernetes cluster (kubeconfig), MinIO as the object store."""

from __future__ import annotations

import os
from typing import Any

import pulumi_kubernetes as k8s

from infra.k8s.apps import MINIO, AppContext
from infra.k8s.components import deploy_apps, resolve_images
from infra.naming import prefix, tags
from infra.settings import Settings


def build(settings: Settings, project: str) -> dict[str, Any]:
    assert settings.local_cluster is not None
    cluster = settings.local_cluster
    environment = settings.environment.value
    provider = k8s.Provider(
        "local-kubernetes",
        kubeconfig=os.path.expanduser(cluster.kubeconfig),
        context=cluster.context,
    )
    bucket = f"{prefix(project, environment)}-artifacts"
    namespace = project
    context = AppContext(
        namespace=namespace,
        environment=environment,
        tags=tags(project, settings),
        artifacts_uri=f"s3://{bucket}/mlflow",
        s3_endpoint=f"http://{MINIO}.{namespace}.svc.cluster.local:9000",
        storage_class=cluster.storage_class,
    )
    outputs = deploy_apps(
        "local-apps",
        context,
        settings,
        provider,
        images=resolve_images(settings.images, None),
        minio_bucket=bucket,
    )
    return {"bucket": bucket, **outputs}

"""Plain Kubernetes objects (dicts) as typed Pulumi resources: `apply` one, `apply_all` of a list."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.k8s.objects import Obj

# Custom resources by API group: the charts the stacks deploy install their CRDs (Prometheus operator,
# Argo Rollouts, sigstore policy-controller).
CUSTOM_GROUPS = ("monitoring.coreos.com/", "argoproj.io/", "policy.sigstore.dev/")

KINDS: dict[str, Callable[..., pulumi.CustomResource]] = {
    "v1/Namespace": k8s.core.v1.Namespace,
    "v1/ServiceAccount": k8s.core.v1.ServiceAccount,
    "v1/Secret": k8s.core.v1.Secret,
    "v1/ConfigMap": k8s.core.v1.ConfigMap,
    "v1/Service": k8s.core.v1.Service,
    "v1/PersistentVolumeClaim": k8s.core.v1.PersistentVolumeClaim,
    "apps/v1/Deployment": k8s.apps.v1.Deployment,
    "apps/v1/StatefulSet": k8s.apps.v1.StatefulSet,
    "batch/v1/Job": k8s.batch.v1.Job,
    "batch/v1/CronJob": k8s.batch.v1.CronJob,
    "autoscaling/v2/HorizontalPodAutoscaler": k8s.autoscaling.v2.HorizontalPodAutoscaler,
    "policy/v1/PodDisruptionBudget": k8s.policy.v1.PodDisruptionBudget,
    "networking.k8s.io/v1/NetworkPolicy": k8s.networking.v1.NetworkPolicy,
    "rbac.authorization.k8s.io/v1/Role": k8s.rbac.v1.Role,
    "rbac.authorization.k8s.io/v1/RoleBinding": k8s.rbac.v1.RoleBinding,
}


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def apply(resource_name: str, obj: Obj, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Create the typed Pulumi resource for a plain Kubernetes object (custom resources included)."""
    kind = f"{obj['apiVersion']}/{obj['kind']}"
    fields = {_snake(key): value for key, value in obj.items() if key not in ("apiVersion", "kind")}
    if kind in KINDS:
        return KINDS[kind](resource_name, **fields, opts=opts)
    if obj["apiVersion"].startswith(CUSTOM_GROUPS):
        return k8s.apiextensions.CustomResource(
            resource_name, api_version=obj["apiVersion"], kind=obj["kind"], **fields, opts=opts
        )
    raise ValueError(f"{resource_name}: no Pulumi resource for Kubernetes kind {kind}")


def apply_all(
    name: str, objects: list[Obj], parent: pulumi.Resource, depends_on: Sequence[pulumi.Resource] = ()
) -> dict[str, pulumi.CustomResource]:
    created = {}
    for obj in objects:
        key = f"{obj['kind'].lower()}-{obj['metadata']['name']}"
        created[key] = apply(f"{name}-{key}", obj, pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)))
    return created


def random_password(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    return random.RandomPassword(name, length=32, special=False, opts=pulumi.ResourceOptions(parent=parent)).result

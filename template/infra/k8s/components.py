"""Components that put the plain-data Kubernetes objects on a cluster: `AppNamespace`, `TrackingServer`,
`ModelServing`, `Observability`, `ProgressiveDelivery`. The provider (which cluster) always comes in through `opts`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.k8s import apps, dashboard, platform, rollout, serving, tracking
from infra.k8s.objects import (
    PROMETHEUS_STACK_CHART,
    PROMETHEUS_STACK_REPO,
    PROMETHEUS_STACK_VERSION,
    Obj,
    app_labels,
    secret,
)
from infra.naming import IMAGES
from infra.settings import ImageSettings, MonitoringSettings, ServingSettings, Settings, TrackingSettings

# Stack output when no image is pinned yet (the first `pulumi up` creates the registries they go to).
APPS_NOT_DEPLOYED = "not deployed: no image pinned yet (images.serving/images.tracking; the images workflow pins them)"

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
    if obj["apiVersion"].startswith(("monitoring.coreos.com/", "argoproj.io/")):
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


def _password(name: str, parent: pulumi.Resource) -> pulumi.Output[str]:
    return random.RandomPassword(name, length=32, special=False, opts=pulumi.ResourceOptions(parent=parent)).result


@dataclass(frozen=True)
class AppNamespaceArgs:
    namespace: str
    tags: dict[str, str]
    group_prefix: str
    # Extra RoleBinding subjects per role (GKE: Google users and groups).
    subjects: dict[str, list[Obj]] = field(default_factory=dict)
    minio: bool = False


class AppNamespace(pulumi.ComponentResource):
    """The app namespace: restricted Pod Security, default-deny NetworkPolicies, RBAC for people."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: AppNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:AppNamespace", name, None, opts)
        labels = app_labels(args.tags, "platform")
        ns = apply(
            f"{name}-namespace", platform.namespace(args.namespace, args.tags), pulumi.ResourceOptions(parent=self)
        )
        objects = platform.network_policies(args.namespace, labels, minio=args.minio)
        objects += platform.rbac_objects(args.namespace, labels, args.group_prefix, args.subjects)
        apply_all(name, objects, self, [ns])
        self.resource = ns
        self.namespace = pulumi.Output.from_input(args.namespace)
        self.register_outputs({"namespace": self.namespace})


@dataclass(frozen=True)
class TrackingServerArgs:
    context: apps.AppContext
    settings: TrackingSettings
    image: pulumi.Input[str]
    minio_bucket: str | None = None


class TrackingServer(pulumi.ComponentResource):
    """MLflow tracking server + registry with its Postgres (or an external database) and, locally, MinIO."""

    url: str
    admin_password: pulumi.Output[str]

    def __init__(self, name: str, args: TrackingServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:TrackingServer", name, None, opts)
        ctx, settings = args.context, args.settings
        labels = ctx.labels(apps.TRACKING)
        secrets: list[Obj] = []
        if settings.database == "postgres":
            secrets.append(secret(apps.DB_SECRET, ctx.namespace, labels, {"password": _password(f"{name}-db", self)}))
        admin = _password(f"{name}-admin", self)
        if settings.auth:
            auth_uri = tracking.database_uri(settings, ctx.namespace, apps.AUTH_DATABASE)
            secrets.append(
                secret(
                    apps.AUTH_SECRET,
                    ctx.namespace,
                    labels,
                    {
                        "auth.ini": admin.apply(lambda password: tracking.auth_config(password, auth_uri)),
                        "flask-secret-key": _password(f"{name}-flask", self),
                    },
                )
            )
            secrets.append(
                secret(
                    apps.SERVING_CREDENTIALS,
                    ctx.namespace,
                    ctx.labels(apps.SERVING),
                    {"username": "admin", "password": admin},
                )
            )
        if args.minio_bucket is not None:
            minio_labels = ctx.labels(apps.MINIO)
            secrets.append(
                secret(
                    apps.MINIO_SECRET,
                    ctx.namespace,
                    minio_labels,
                    {"user": "mlflow", "password": _password(f"{name}-minio", self)},
                )
            )
        created = apply_all(name, secrets, self)
        ready: list[pulumi.Resource] = list(created.values())
        if args.minio_bucket is not None:
            ready += apply_all(name, tracking.minio_objects(ctx, args.minio_bucket), self, ready).values()
        if settings.database == "postgres":
            ready += apply_all(name, tracking.postgres_objects(ctx, settings), self, ready).values()
        apply_all(name, tracking.tracking_objects(ctx, settings, args.image), self, ready)
        self.url = ctx.tracking_uri()
        self.admin_password = pulumi.Output.secret(admin)
        self.register_outputs({"url": self.url})


@dataclass(frozen=True)
class ModelServingArgs:
    context: apps.AppContext
    settings: ServingSettings
    monitoring: MonitoringSettings
    image: pulumi.Input[str]
    tracking_auth: bool
    prometheus_operator: bool


class ModelServing(pulumi.ComponentResource):
    """BentoML serving of the model version pinned in the stack file, with its Prometheus scrape and alerts."""

    url: str
    model_version: int | None

    def __init__(self, name: str, args: ModelServingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:ModelServing", name, None, opts)
        ctx = args.context
        objects = serving.serving_objects(
            ctx, args.settings, args.image, tracking_auth=args.tracking_auth, monitoring=args.monitoring
        )
        if args.monitoring.enabled:
            objects.append(serving.drift_cronjob(ctx, args.monitoring, args.image, tracking_auth=args.tracking_auth))
        apply_all(name, objects, self)
        if args.prometheus_operator:
            labels = ctx.labels(apps.SERVING)
            apply_all(
                name,
                [
                    platform.service_monitor(ctx.namespace, labels),
                    platform.prometheus_rules(ctx.namespace, labels, args.monitoring),
                    dashboard.dashboard_config_map(ctx.namespace, labels, args.monitoring),
                ],
                self,
            )
        self.url = f"http://{apps.SERVING}.{ctx.namespace}.svc.cluster.local:{apps.SERVING_PORT}"
        self.model_version = args.settings.model.version
        self.register_outputs({"url": self.url})


@dataclass(frozen=True)
class ObservabilityArgs:
    tags: dict[str, str]
    retention_days: int


class Observability(pulumi.ComponentResource):
    """kube-prometheus-stack (Prometheus, Alertmanager, Grafana) in its own namespace, chart version pinned."""

    release: k8s.helm.v3.Release
    grafana_password: pulumi.Output[str]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:Observability", name, None, opts)
        labels = app_labels(args.tags, "monitoring")
        # Prometheus' operator and Grafana run non-root; baseline is enforced, restricted is warned about.
        ns = apply(
            f"{name}-namespace",
            platform.namespace(platform.MONITORING_NAMESPACE, args.tags, level="baseline"),
            pulumi.ResourceOptions(parent=self),
        )
        password = _password(f"{name}-grafana", self)
        admin = apply(
            f"{name}-grafana-admin",
            secret(
                "grafana-admin",
                platform.MONITORING_NAMESPACE,
                labels,
                {"admin-user": "admin", "admin-password": password},
            ),
            pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-prometheus",
            name="prometheus",
            chart=PROMETHEUS_STACK_CHART,
            version=PROMETHEUS_STACK_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=PROMETHEUS_STACK_REPO),
            namespace=platform.MONITORING_NAMESPACE,
            values=platform.prometheus_stack_values(args.retention_days),
            timeout=900,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns, admin]),
        )
        self.grafana_password = pulumi.Output.secret(password)
        self.register_outputs({"release": self.release.name})


@dataclass(frozen=True)
class ProgressiveDeliveryArgs:
    tags: dict[str, str]


class ProgressiveDelivery(pulumi.ComponentResource):
    """The Argo Rollouts controller and its CRDs, in its own namespace, chart version pinned."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ProgressiveDeliveryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:ProgressiveDelivery", name, None, opts)
        ns = apply(
            f"{name}-namespace",
            platform.namespace(rollout.ROLLOUTS_NAMESPACE, args.tags),
            pulumi.ResourceOptions(parent=self),
        )
        self.release = k8s.helm.v3.Release(
            f"{name}-argo-rollouts",
            name="argo-rollouts",
            chart=rollout.ROLLOUTS_CHART,
            version=rollout.ROLLOUTS_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=rollout.ROLLOUTS_REPO),
            namespace=rollout.ROLLOUTS_NAMESPACE,
            values=rollout.rollouts_values(),
            timeout=600,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        self.register_outputs({"release": self.release.name})


def resolve_images(
    images: ImageSettings, registry_image: Callable[[str, str], pulumi.Input[str]] | None
) -> dict[str, pulumi.Input[str]] | None:
    """What each app's pods pull: a pinned digest in the stack's registry (`registry_image(image, digest)`),
    or the pinned reference as it is. None: nothing pinned yet."""
    if not images.pinned:
        return None
    resolved: dict[str, pulumi.Input[str]] = {}
    for image in IMAGES:
        pin = getattr(images, image)
        if pin.reference is not None:
            resolved[image] = pin.reference
        elif registry_image is None:
            raise ValueError(f"images.{image}: a digest needs the stack's registry, and this stack has none")
        else:
            resolved[image] = registry_image(image, pin.digest)
    return resolved


def deploy_apps(
    name: str,
    ctx: apps.AppContext,
    settings: Settings,
    provider: pulumi.ProviderResource,
    *,
    images: dict[str, pulumi.Input[str]] | None,
    subjects: dict[str, list[Obj]] | None = None,
    minio_bucket: str | None = None,
) -> dict[str, Any]:
    """Everything the stack runs on one cluster; returns the URLs and generated credentials (secret).

    `images` (from `resolve_images`) None: the namespace and monitoring only, the apps wait for their images."""
    opts = pulumi.ResourceOptions(providers=[provider])
    tags = ctx.tags
    namespace = AppNamespace(
        f"{name}-namespace",
        AppNamespaceArgs(
            namespace=ctx.namespace,
            tags=tags,
            group_prefix=tags["project"],
            subjects=subjects or {},
            minio=minio_bucket is not None,
        ),
        opts,
    )
    after_namespace = pulumi.ResourceOptions(providers=[provider], depends_on=[namespace])
    observability = None
    if settings.monitoring.enabled:
        observability = Observability(
            f"{name}-observability",
            ObservabilityArgs(tags=tags, retention_days=settings.monitoring.log_retention_days),
            opts,
        )
    delivery = None
    if settings.serving.canary.enabled:  # the Rollout's CRDs and controller come before any Rollout
        delivery = ProgressiveDelivery(f"{name}-progressive-delivery", ProgressiveDeliveryArgs(tags=tags), opts)
    grafana = {"grafana_admin_password": observability.grafana_password} if observability is not None else {}
    if images is None:
        return {"apps": APPS_NOT_DEPLOYED, **grafana}
    tracking = TrackingServer(
        f"{name}-tracking",
        TrackingServerArgs(
            context=ctx, settings=settings.tracking, image=images["tracking"], minio_bucket=minio_bucket
        ),
        after_namespace,
    )
    serving = ModelServing(
        f"{name}-serving",
        ModelServingArgs(
            context=ctx,
            settings=settings.serving,
            monitoring=settings.monitoring,
            image=images["serving"],
            tracking_auth=settings.tracking.auth,
            prometheus_operator=observability is not None,
        ),
        pulumi.ResourceOptions(
            providers=[provider],
            depends_on=[namespace, tracking, *(c for c in (observability, delivery) if c is not None)],
        ),
    )
    return {
        "mlflow_url": tracking.url,
        "serving_url": serving.url,
        "mlflow_admin_password": tracking.admin_password,
        **grafana,
    }

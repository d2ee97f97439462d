"""Components that put the apps' plain-data Kubernetes objects on a cluster: `AppNamespace`, `TrackingServer`,
`ModelServing`, and `deploy_apps`, which wires them with the cluster-wide controllers of `addons`. The
provider (which cluster) always comes in through `opts`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.k8s import admission, apps, dashboard, platform, serving, tracking
from infra.k8s.addons import (
    ImageAdmission,
    ImageAdmissionArgs,
    Observability,
    ObservabilityArgs,
    ProgressiveDelivery,
    ProgressiveDeliveryArgs,
)
from infra.k8s.objects import Obj, app_labels, secret
from infra.k8s.resources import apply, apply_all, random_password
from infra.naming import IMAGES
from infra.settings import ImageSettings, MonitoringSettings, ServingSettings, Settings, TrackingSettings

# Stack output when no image is pinned yet (the first `pulumi up` creates the registries they go to).
APPS_NOT_DEPLOYED = "not deployed: no image pinned yet (images.serving/images.tracking; the images workflow pins them)"


@dataclass(frozen=True)
class AppNamespaceArgs:
    namespace: str
    tags: dict[str, str]
    group_prefix: str
    # Extra RoleBinding subjects per role (GKE: Google users and groups).
    subjects: dict[str, list[Obj]] = field(default_factory=dict)
    minio: bool = False
    # Pods are admitted only with images the policy-controller verifies (`addons.ImageAdmission`).
    verify_images: bool = False


class AppNamespace(pulumi.ComponentResource):
    """The app namespace: restricted Pod Security, default-deny NetworkPolicies, RBAC for people."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, args: AppNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:AppNamespace", name, None, opts)
        labels = app_labels(args.tags, "platform")
        verified = {admission.INCLUDE_LABEL: "true"} if args.verify_images else {}
        ns = apply(
            f"{name}-namespace",
            platform.namespace(args.namespace, {**args.tags, **verified}),
            pulumi.ResourceOptions(parent=self),
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
            secrets.append(
                secret(apps.DB_SECRET, ctx.namespace, labels, {"password": random_password(f"{name}-db", self)})
            )
        admin = random_password(f"{name}-admin", self)
        if settings.auth:
            auth_uri = tracking.database_uri(settings, ctx.namespace, apps.AUTH_DATABASE)
            secrets.append(
                secret(
                    apps.AUTH_SECRET,
                    ctx.namespace,
                    labels,
                    {
                        "auth.ini": admin.apply(lambda password: tracking.auth_config(password, auth_uri)),
                        "flask-secret-key": random_password(f"{name}-flask", self),
                    },
                )
            )
            users = (
                (apps.ADMIN_CREDENTIALS, apps.USERS_JOB, "admin", admin),
                (apps.SERVING_CREDENTIALS, apps.SERVING, apps.SERVING_USER, random_password(f"{name}-serving", self)),
                (apps.DRIFT_CREDENTIALS, apps.DRIFT, apps.DRIFT_USER, random_password(f"{name}-drift", self)),
            )
            for secret_name, app, username, password in users:
                values = {
                    "username": username,
                    "password": password,
                    apps.CREDENTIALS_KEY: pulumi.Output.all(username, password).apply(
                        lambda pair: tracking.client_credentials(*pair)
                    ),
                }
                secrets.append(secret(secret_name, ctx.namespace, ctx.labels(app), values))
        if args.minio_bucket is not None:
            minio_labels = ctx.labels(apps.MINIO)
            minio_password = random_password(f"{name}-minio", self)
            secrets.append(
                secret(
                    apps.MINIO_SECRET,
                    ctx.namespace,
                    minio_labels,
                    {
                        "user": "mlflow",
                        "password": minio_password,
                        apps.CREDENTIALS_KEY: minio_password.apply(
                            lambda text: tracking.object_store_credentials("mlflow", text)
                        ),
                    },
                )
            )
        created = apply_all(name, secrets, self)
        ready: list[pulumi.Resource] = list(created.values())
        if args.minio_bucket is not None:
            ready += apply_all(name, tracking.minio_objects(ctx, args.minio_bucket), self, ready).values()
        if settings.database == "postgres":
            ready += apply_all(name, tracking.postgres_objects(ctx, settings), self, ready).values()
        server = apply_all(name, tracking.tracking_objects(ctx, settings, args.image), self, ready)
        if settings.auth:  # the app users, once the server answers
            apply_all(name, [tracking.users_job(ctx, args.image)], self, list(server.values()))
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
            verify_images=settings.images.verify_signatures,
        ),
        opts,
    )
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
    verifier = None
    if settings.images.verify_signatures:  # the webhook and its policies come before any app pod
        assert settings.github is not None, "a cloud environment has a github section (infra/settings/stack.py)"
        verifier = ImageAdmission(
            f"{name}-image-admission",
            ImageAdmissionArgs(
                tags=tags,
                repository=settings.github.repository,
                app_images=list(images.values()),
                verifier_annotations=ctx.identity_annotations.get(admission.VERIFIER, {}),
            ),
            opts,
        )
    before_apps = [namespace, *(c for c in (verifier,) if c is not None)]
    tracking = TrackingServer(
        f"{name}-tracking",
        TrackingServerArgs(
            context=ctx, settings=settings.tracking, image=images["tracking"], minio_bucket=minio_bucket
        ),
        pulumi.ResourceOptions(providers=[provider], depends_on=before_apps),
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
            depends_on=[*before_apps, tracking, *(c for c in (observability, delivery) if c is not None)],
        ),
    )
    return {
        "mlflow_url": tracking.url,
        "serving_url": serving.url,
        "mlflow_admin_password": tracking.admin_password,
        **grafana,
    }

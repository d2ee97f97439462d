"""Cluster-wide controllers from pinned charts, each in its own namespace: `Observability`
(kube-prometheus-stack), `ProgressiveDelivery` (Argo Rollouts), `ImageAdmission` (sigstore
policy-controller and the stack's image policies). The provider always comes in through `opts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.k8s import admission, platform, rollout
from infra.k8s.objects import (
    PROMETHEUS_STACK_CHART,
    PROMETHEUS_STACK_REPO,
    PROMETHEUS_STACK_VERSION,
    app_labels,
    secret,
)
from infra.k8s.resources import apply, apply_all, random_password


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
        password = random_password(f"{name}-grafana", self)
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
class ChartRelease:
    name: str
    chart: str
    version: str
    repository: str


def chart_release(
    parent: pulumi.Resource,
    name: str,
    chart: ChartRelease,
    *,
    namespace: str,
    values: dict[str, Any],
    tags: dict[str, str],
) -> k8s.helm.v3.Release:
    """A pinned chart in a namespace of its own (restricted Pod Security), the namespace made first;
    `<name>-namespace` and `<name>-<release>` are the resources' names."""
    ns = apply(f"{name}-namespace", platform.namespace(namespace, tags), pulumi.ResourceOptions(parent=parent))
    return k8s.helm.v3.Release(
        f"{name}-{chart.name}",
        name=chart.name,
        chart=chart.chart,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repository),
        namespace=namespace,
        values=values,
        timeout=600,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[ns]),
    )


@dataclass(frozen=True)
class ProgressiveDeliveryArgs:
    tags: dict[str, str]


class ProgressiveDelivery(pulumi.ComponentResource):
    """The Argo Rollouts controller and its CRDs, in its own namespace, chart version pinned."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ProgressiveDeliveryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:ProgressiveDelivery", name, None, opts)
        self.release = chart_release(
            self,
            name,
            ChartRelease("argo-rollouts", rollout.ROLLOUTS_CHART, rollout.ROLLOUTS_VERSION, rollout.ROLLOUTS_REPO),
            namespace=rollout.ROLLOUTS_NAMESPACE,
            values=rollout.rollouts_values(),
            tags=args.tags,
        )
        self.register_outputs({"release": self.release.name})


@dataclass(frozen=True)
class ImageAdmissionArgs:
    tags: dict[str, str]
    # `owner/name`: only its images workflow on main signs what the app namespace may run.
    repository: str
    # The pinned app images (strings or Pulumi outputs); their repositories need the signature.
    app_images: list[pulumi.Input[str]]
    # Binds the webhook's service account to the cloud identity that reads the stack's registries.
    verifier_annotations: dict[str, Any] = field(default_factory=dict)


class ImageAdmission(pulumi.ComponentResource):
    """The sigstore policy-controller (chart pinned) and the stack's two ClusterImagePolicies: signed app
    images, reviewed third-party digests. Namespaces labelled `policy.sigstore.dev/include` are verified."""

    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: ImageAdmissionArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:k8s:ImageAdmission", name, None, opts)
        self.release = chart_release(
            self,
            name,
            ChartRelease(
                "policy-controller",
                admission.POLICY_CONTROLLER_CHART,
                admission.POLICY_CONTROLLER_VERSION,
                admission.POLICY_CONTROLLER_REPO,
            ),
            namespace=admission.POLICY_CONTROLLER_NAMESPACE,
            values=admission.controller_values(args.verifier_annotations),
            tags=args.tags,
        )
        globs = [pulumi.Output.from_input(image).apply(admission.repository_glob) for image in args.app_images]
        policies = admission.image_policies(args.tags["project"], globs, args.repository, args.tags)
        apply_all(name, policies, self, [self.release])  # the chart installs the CRDs first
        self.register_outputs({"release": self.release.name})

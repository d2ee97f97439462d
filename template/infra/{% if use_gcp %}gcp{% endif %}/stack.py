"""Wire the GCP components of one stack: network, keys, bucket, identities, GKE, pools, budget, monitoring, apps."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_gcp as gcp
import pulumi_kubernetes as k8s

from infra.gcp.admission import BinaryAuthorization, BinaryAuthorizationArgs
from infra.gcp.cluster import Cluster, ClusterArgs, Keys, KeysArgs, NodePools, NodePoolsArgs
from infra.gcp.identity import (
    AppAccount,
    GithubDeployIdentity,
    GithubDeployIdentityArgs,
    WorkloadServiceAccounts,
    WorkloadServiceAccountsArgs,
)
from infra.gcp.observability import Budget, BudgetArgs, Monitoring, MonitoringArgs
from infra.gcp.registry import ContainerRegistry, ContainerRegistryArgs
from infra.gcp.storage import Network, NetworkArgs, ObjectStore, ObjectStoreArgs
from infra.k8s.admission import (
    CHART_IMAGES,
    POLICY_CONTROLLER_NAMESPACE,
    THIRD_PARTY_IMAGES,
    VERIFIER,
    VERIFIER_SERVICE_ACCOUNT,
)
from infra.k8s.apps import SERVING, TRACKING, AppContext
from infra.k8s.components import deploy_apps, resolve_images
from infra.k8s.platform import DATA_SCIENTISTS, ML_ENGINEERS, google_subjects
from infra.naming import attestor_names, prefix, tags
from infra.settings import Settings


def build(settings: Settings, project: str) -> dict[str, Any]:
    assert settings.gcp is not None and settings.budget is not None and settings.github is not None
    cloud = settings.gcp
    environment = settings.environment.value
    stem = prefix(project, environment)
    labels = tags(project, settings)
    project_number = gcp.organizations.get_project_output(project_id=cloud.project).number

    network = Network(
        "gcp-network",
        NetworkArgs(
            project=cloud.project,
            region=cloud.region,
            name_prefix=stem,
            subnet_cidr=cloud.subnet_cidr,
            pods_cidr=cloud.pods_cidr,
            services_cidr=cloud.services_cidr,
        ),
    )
    keys = Keys(
        "gcp-keys",
        KeysArgs(
            project=cloud.project,
            project_number=project_number,
            region=cloud.region,
            name_prefix=stem,
            labels=labels,
            bucket_key=settings.storage.customer_managed_key,
        ),
    )
    store = ObjectStore(
        "gcp-artifacts",
        ObjectStoreArgs(
            project=cloud.project,
            region=cloud.region,
            name_prefix=stem,
            labels=labels,
            kms_key_id=keys.bucket_key_id,
            force_destroy=settings.storage.force_destroy,
            archive_after_days=settings.storage.archive_after_days,
            noncurrent_expire_days=settings.storage.noncurrent_expire_days,
            abort_incomplete_upload_days=settings.storage.abort_incomplete_upload_days,
        ),
        pulumi.ResourceOptions(depends_on=[keys]),
    )
    deploy = GithubDeployIdentity(
        "gcp-github",
        GithubDeployIdentityArgs(
            project=cloud.project, name_prefix=stem, repository=settings.github.repository, environment=environment
        ),
    )
    cluster_name = f"{stem}-gke"
    cluster = Cluster(
        "gcp-cluster",
        ClusterArgs(
            project=cloud.project,
            region=cloud.region,
            cluster_name=cluster_name,
            network_id=network.network_id,
            subnet_id=network.subnet_id,
            master_cidr=cloud.master_cidr,
            authorized_cidrs=[str(cidr) for cidr in cloud.cluster.endpoint_public_access_cidrs],
            release_channel=cloud.release_channel,
            secrets_key_id=keys.secrets_key_id,
            labels=labels,
            deletion_protection=cloud.deletion_protection,
            kubernetes_version=cloud.cluster.kubernetes_version,
        ),
        pulumi.ResourceOptions(depends_on=[keys]),
    )
    pools = NodePools(
        "gcp-nodes",
        NodePoolsArgs(
            project=cloud.project,
            region=cloud.region,
            cluster_name=cluster.name,
            name_prefix=stem,
            node_service_account=cluster.node_service_account,
            system=cloud.cluster.system_pool,
            spot=cloud.cluster.spot_pool,
            labels=labels,
        ),
    )
    namespace = project
    # The image verifier (policy-controller's webhook) reads the images' signatures from the registry.
    verifier = (
        {VERIFIER: AppAccount(POLICY_CONTROLLER_NAMESPACE, VERIFIER_SERVICE_ACCOUNT, write=False, bucket=False)}
        if settings.images.verify_signatures
        else {}
    )
    workloads = WorkloadServiceAccounts(
        "gcp-workloads",
        WorkloadServiceAccountsArgs(
            project=cloud.project,
            name_prefix=stem,
            bucket_name=store.bucket_name,
            accounts={
                TRACKING: AppAccount(namespace, TRACKING, write=True),
                SERVING: AppAccount(namespace, SERVING, write=False),
                **verifier,
            },
        ),
    )
    registry = ContainerRegistry(
        "gcp-images",
        ContainerRegistryArgs(
            project=cloud.project,
            region=cloud.region,
            stack_project=project,
            environment=environment,
            push_members=[deploy.service_account_email.apply(lambda email: f"serviceAccount:{email}")],
            pull_members=[
                cluster.node_service_account.apply(lambda email: f"serviceAccount:{email}"),
                *(workloads.emails[app].apply(lambda email: f"serviceAccount:{email}") for app in verifier),
            ],
            keep_last=settings.images.keep_last,
            labels=labels,
            kms_key_name=keys.registry_key_id,
        ),
        pulumi.ResourceOptions(depends_on=keys.grants),
    )
    budget = Budget(
        "gcp-budget",
        BudgetArgs(
            project=cloud.project,
            project_number=project_number,
            billing_account=cloud.billing_account,
            display_name=f"{stem} monthly",
            environment=environment,
            settings=settings.budget,
            labels=labels,
        ),
    )
    if settings.monitoring.enabled:
        Monitoring(
            "gcp-monitoring",
            MonitoringArgs(
                project=cloud.project,
                region=cloud.region,
                name_prefix=stem,
                cluster_name=cluster_name,
                alert_emails=list(settings.budget.alert_emails),
                log_retention_days=settings.monitoring.log_retention_days,
                labels=labels,
            ),
        )
    attestor, _ = attestor_names(cloud.project, cloud.region, project, environment)
    pinned = [settings.images.serving, settings.images.tracking]
    admission = BinaryAuthorization(
        "gcp-admission",
        BinaryAuthorizationArgs(
            project=cloud.project,
            project_number=project_number,
            key_ring_id=keys.ring_id,
            attestor=attestor.rsplit("/", 1)[-1],
            attesters=[deploy.service_account_email.apply(lambda email: f"serviceAccount:{email}")],
            unattested=[
                *THIRD_PARTY_IMAGES,
                *(image for images in CHART_IMAGES.values() for image in images),
                *(pin.reference for pin in pinned if pin is not None and pin.reference is not None),
            ],
            labels=labels,
            description=f"{stem} app images",
        ),
    )
    kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.kubeconfig())
    # Nothing runs on the cluster before the admission policy that says what may.
    provider = k8s.Provider(
        "gcp-kubernetes", kubeconfig=kubeconfig, opts=pulumi.ResourceOptions(depends_on=[pools, admission.policy])
    )
    context = AppContext(
        namespace=namespace,
        environment=environment,
        tags=labels,
        artifacts_uri=pulumi.Output.concat("gs://", store.bucket_name, "/mlflow"),
        identity_annotations={
            app: {"iam.gke.io/gcp-service-account": email} for app, email in workloads.emails.items()
        },
    )
    subjects = {
        DATA_SCIENTISTS: google_subjects(list(settings.access.data_scientists)),
        ML_ENGINEERS: google_subjects(list(settings.access.ml_engineers)),
    }
    app_outputs = deploy_apps(
        "gcp-apps",
        context,
        settings,
        provider,
        images=resolve_images(settings.images, registry.image),
        subjects=subjects,
    )
    return {
        "bucket": store.bucket_name,
        "cluster": cluster.name,
        "kubeconfig": kubeconfig,
        "deploy_service_account": deploy.service_account_email,
        "workload_identity_provider": deploy.provider_name,
        "budget": budget.budget_name,
        "workload_service_accounts": workloads.emails,
        "registry": registry.path,
        "attestor": admission.attestor,
        **app_outputs,
    }

"""Wire the AWS components of one stack: network, bucket, identities, EKS, node pools, budget, monitoring, apps."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.aws.cluster import Cluster, ClusterArgs, NodePools, NodePoolsArgs
from infra.aws.identity import (
    GithubDeployIdentity,
    GithubDeployIdentityArgs,
    WorkloadRole,
    WorkloadRoles,
    WorkloadRolesArgs,
)
from infra.aws.network import FlowLogs, FlowLogsArgs, Network, NetworkArgs
from infra.aws.observability import Budget, BudgetArgs, Monitoring, MonitoringArgs
from infra.aws.registry import ContainerRegistry, ContainerRegistryArgs
from infra.aws.storage import ObjectStore, ObjectStoreArgs
from infra.k8s.admission import POLICY_CONTROLLER_NAMESPACE, VERIFIER, VERIFIER_SERVICE_ACCOUNT
from infra.k8s.apps import SERVING, TRACKING, AppContext
from infra.k8s.components import deploy_apps, resolve_images
from infra.k8s.platform import DATA_SCIENTISTS, ML_ENGINEERS
from infra.naming import IMAGES, prefix, tags
from infra.settings import Settings


def build(settings: Settings, project: str) -> dict[str, Any]:
    assert settings.aws is not None and settings.budget is not None and settings.github is not None
    cloud = settings.aws
    environment = settings.environment.value
    stem = prefix(project, environment)
    stack_tags = tags(project, settings)
    cluster_name = f"{stem}-eks"
    account_id = aws.get_caller_identity_output().account_id

    network = Network(
        "aws-network",
        NetworkArgs(
            region=cloud.region,
            cidr=cloud.vpc_cidr,
            zones=cloud.availability_zones,
            single_nat_gateway=cloud.single_nat_gateway,
            cluster_name=cluster_name,
            tags=stack_tags,
        ),
    )
    store = ObjectStore(
        "aws-artifacts",
        ObjectStoreArgs(
            account_id=account_id,
            region=cloud.region,
            tags=stack_tags,
            customer_managed_key=settings.storage.customer_managed_key,
            force_destroy=settings.storage.force_destroy,
            archive_after_days=settings.storage.archive_after_days,
            noncurrent_expire_days=settings.storage.noncurrent_expire_days,
            abort_incomplete_upload_days=settings.storage.abort_incomplete_upload_days,
        ),
    )
    deploy = GithubDeployIdentity(
        "aws-github",
        GithubDeployIdentityArgs(
            account_id=account_id,
            region=cloud.region,
            repository=settings.github.repository,
            environment=environment,
            role_name=f"{stem}-deploy",
            name_prefix=stem,
            project=project,
            tags=stack_tags,
            create_provider=cloud.create_github_oidc_provider,
        ),
    )
    people: dict[str, list[str]] = {}
    for role, principals in (
        (DATA_SCIENTISTS, settings.access.data_scientists),
        (ML_ENGINEERS, settings.access.ml_engineers),
    ):
        for principal in principals:
            if principal.startswith("arn:aws:"):
                people.setdefault(principal, []).append(f"{project}:{role}")
    cluster = Cluster(
        "aws-cluster",
        ClusterArgs(
            cluster_name=cluster_name,
            kubernetes_version=cloud.cluster.kubernetes_version,
            account_id=account_id,
            region=cloud.region,
            private_subnet_ids=network.private_subnet_ids,
            public_access_cidrs=[str(cidr) for cidr in cloud.cluster.endpoint_public_access_cidrs],
            log_retention_days=settings.monitoring.log_retention_days,
            tags=stack_tags,
            access_groups=people,
            admin_role_arns=[deploy.role_arn],
        ),
    )
    pools = NodePools(
        "aws-nodes",
        NodePoolsArgs(
            cluster=cluster,
            cluster_name=cluster_name,
            subnet_ids=network.private_subnet_ids,
            system=cloud.cluster.system_pool,
            spot=cloud.cluster.spot_pool,
            tags=stack_tags,
        ),
    )
    namespace = project
    # The image verifier (policy-controller's webhook) reads the images' signatures from the registry.
    verifier = (
        {VERIFIER: WorkloadRole(POLICY_CONTROLLER_NAMESPACE, VERIFIER_SERVICE_ACCOUNT, write=False, reaches="registry")}
        if settings.images.verify_signatures
        else {}
    )
    workloads = WorkloadRoles(
        "aws-workloads",
        WorkloadRolesArgs(
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer_host=cluster.oidc_issuer_host,
            bucket_arn=store.bucket_arn,
            key_arn=store.key_arn,
            roles={
                TRACKING: WorkloadRole(namespace, TRACKING, write=True),
                SERVING: WorkloadRole(namespace, SERVING, write=False),
                **verifier,
            },
            name_prefix=stem,
            tags=stack_tags,
            repositories_arn=pulumi.Output.concat(
                "arn:aws:ecr:", cloud.region, ":", account_id, ":repository/", stem, "/*"
            ),
        ),
    )
    registry = ContainerRegistry(
        "aws-images",
        ContainerRegistryArgs(
            account_id=account_id,
            region=cloud.region,
            project=project,
            environment=environment,
            images=IMAGES,
            push_role_arns=[deploy.role_arn],
            pull_role_arns=[cluster.node_role_arn, *(workloads.role_arns[app] for app in verifier)],
            keep_last=settings.images.keep_last,
            tags=stack_tags,
            key_arn=store.key_arn,
        ),
    )
    FlowLogs(
        "aws-flow-logs",
        FlowLogsArgs(
            vpc_id=network.vpc_id,
            log_group_name=f"/aws/vpc/{stem}-flow-logs",
            retention_days=settings.monitoring.log_retention_days,
            key_arn=cluster.key_arn,
            account_id=account_id,
            region=cloud.region,
            tags=stack_tags,
        ),
    )
    budget = Budget(
        "aws-budget",
        BudgetArgs(budget_name=f"{stem}-monthly", environment=environment, settings=settings.budget, tags=stack_tags),
    )
    if settings.monitoring.enabled:
        Monitoring(
            "aws-monitoring",
            MonitoringArgs(
                cluster_name=cluster.name,
                cluster_name_prefix=stem,
                key_arn=cluster.key_arn,
                alert_emails=list(settings.budget.alert_emails),
                log_retention_days=settings.monitoring.log_retention_days,
                tags=stack_tags,
            ),
            pulumi.ResourceOptions(depends_on=[pools]),
        )
    kubeconfig: pulumi.Output[str] = pulumi.Output.secret(cluster.kubeconfig(cloud.region))
    provider = k8s.Provider("aws-kubernetes", kubeconfig=kubeconfig, opts=pulumi.ResourceOptions(depends_on=[pools]))
    context = AppContext(
        namespace=namespace,
        environment=environment,
        tags=stack_tags,
        artifacts_uri=pulumi.Output.concat("s3://", store.bucket_name, "/mlflow"),
        identity_annotations={app: {"eks.amazonaws.com/role-arn": arn} for app, arn in workloads.role_arns.items()},
    )
    app_outputs = deploy_apps(
        "aws-apps", context, settings, provider, images=resolve_images(settings.images, registry.image)
    )
    return {
        "bucket": store.bucket_name,
        "cluster": cluster.name,
        "kubeconfig": kubeconfig,
        "deploy_role_arn": deploy.role_arn,
        "budget": budget.budget_name,
        "workload_roles": workloads.role_arns,
        "registry": registry.registry,
        "repositories": registry.repository_names,
        **app_outputs,
    }

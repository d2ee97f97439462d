"""`Cluster` (EKS control plane, its IRSA issuer and access entries) and `NodePools` (system + spot)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.aws.documents import kms_key_policy, service_trust
from infra.kubeconfig import eks_kubeconfig
from infra.naming import BATCH_TAINT, require_pool_roles
from infra.settings import NodePool

CONTROL_PLANE_LOGS = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
MANAGED_POLICY = "arn:aws:iam::aws:policy/"
NODE_POLICIES = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
    "CloudWatchAgentServerPolicy",  # Container Insights (node and pod metrics for the alarms)
]
ADMIN_ACCESS_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@dataclass(frozen=True)
class ClusterArgs:
    cluster_name: str
    kubernetes_version: str
    account_id: pulumi.Input[str]
    region: str
    private_subnet_ids: Sequence[pulumi.Input[str]]
    public_access_cidrs: list[str]
    log_retention_days: int
    tags: dict[str, str]
    # IAM principal ARN -> Kubernetes groups (people's access; the RBAC objects bind the groups).
    access_groups: dict[str, list[str]] = field(default_factory=dict)
    admin_role_arns: list[pulumi.Input[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if "0.0.0.0/0" in self.public_access_cidrs:
            raise ValueError("ClusterArgs.public_access_cidrs must not contain 0.0.0.0/0")
        if len(self.private_subnet_ids) < 2:
            raise ValueError("ClusterArgs.private_subnet_ids needs subnets in at least two zones")


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_issuer_host: pulumi.Output[str]
    node_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{args.cluster_name}: Kubernetes secrets and control-plane logs",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(
                lambda account: json.dumps(kms_key_policy(account, args.region, log_groups=True))
            ),
            tags=args.tags,
            opts=child,
        )
        # Created before the cluster so that retention and encryption apply from the first log line.
        logs = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{args.cluster_name}/cluster",
            retention_in_days=args.log_retention_days,
            kms_key_id=key.arn,
            tags=args.tags,
            opts=child,
        )
        cluster_role = aws.iam.Role(
            f"{name}-control-plane-role",
            name=f"{args.cluster_name}-control-plane",
            assume_role_policy=json.dumps(service_trust("eks.amazonaws.com")),
            tags=args.tags,
            opts=child,
        )
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-control-plane-policy",
            role=cluster_role.name,
            policy_arn=MANAGED_POLICY + "AmazonEKSClusterPolicy",
            opts=child,
        )
        public = bool(args.public_access_cidrs)
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=args.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=args.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=public,
                public_access_cidrs=args.public_access_cidrs if public else None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn), resources=["secrets"]
            ),
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=True
            ),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[logs, attachment]),
        )
        on_cluster = pulumi.ResourceOptions(parent=cluster)
        issuer = cluster.identities.apply(_issuer)
        irsa = aws.iam.OpenIdConnectProvider(
            f"{name}-irsa",
            url=issuer,
            client_id_lists=["sts.amazonaws.com"],
            tags=args.tags,
            opts=on_cluster,
        )
        for index, role_arn in enumerate(args.admin_role_arns):
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{index}",
                cluster_name=cluster.name,
                principal_arn=role_arn,
                tags=args.tags,
                opts=on_cluster,
            )
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{index}",
                cluster_name=cluster.name,
                principal_arn=role_arn,
                policy_arn=ADMIN_ACCESS_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=cluster, depends_on=[entry]),
            )
        for index, (principal, groups) in enumerate(sorted(args.access_groups.items())):
            aws.eks.AccessEntry(
                f"{name}-people-{index}",
                cluster_name=cluster.name,
                principal_arn=principal,
                kubernetes_groups=groups,
                tags=args.tags,
                opts=on_cluster,
            )

        node_role = aws.iam.Role(
            f"{name}-node-role",
            name=f"{args.cluster_name}-nodes",
            assume_role_policy=json.dumps(service_trust("ec2.amazonaws.com")),
            tags=args.tags,
            opts=child,
        )
        self._node_policies = [
            aws.iam.RolePolicyAttachment(
                f"{name}-node-{policy}", role=node_role.name, policy_arn=MANAGED_POLICY + policy, opts=child
            )
            for policy in NODE_POLICIES
        ]

        self.cluster = cluster
        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.certificate_authority = cluster.certificate_authority.apply(lambda ca: ca.data or "")
        self.oidc_provider_arn = irsa.arn
        self.oidc_issuer_host = issuer.apply(lambda url: url.removeprefix("https://"))
        self.node_role_arn = node_role.arn
        self.key_arn = key.arn  # also encrypts the Container Insights log groups (observability.Monitoring)
        self.register_outputs({"name": self.name, "endpoint": self.endpoint, "oidc_provider_arn": irsa.arn})

    def kubeconfig(self, region: str) -> pulumi.Output[str]:
        """A kubeconfig that authenticates with `aws eks get-token` (the caller's own AWS identity)."""
        return pulumi.Output.all(self.name, self.endpoint, self.certificate_authority).apply(
            lambda values: json.dumps(eks_kubeconfig(values[0], values[1], values[2], region))
        )


def _issuer(identities: Any) -> str:
    """The cluster's OIDC issuer URL (EKS reports one identity with one issuer)."""
    return str(identities[0].oidcs[0].issuer)


@dataclass(frozen=True)
class NodePoolsArgs:
    cluster: Cluster
    cluster_name: str
    subnet_ids: Sequence[pulumi.Input[str]]
    system: NodePool
    spot: NodePool
    tags: dict[str, str]

    def __post_init__(self) -> None:
        require_pool_roles("NodePoolsArgs", self.system, self.spot)


class NodePools(pulumi.ComponentResource):
    system_pool_name: pulumi.Output[str]
    spot_pool_name: pulumi.Output[str]

    def __init__(self, name: str, args: NodePoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:NodePools", name, None, opts)
        autoscaled = {
            f"k8s.io/cluster-autoscaler/{args.cluster_name}": "owned",
            "k8s.io/cluster-autoscaler/enabled": "true",
        }
        # The autoscaler reads these tags to scale the spot pool up from zero nodes.
        batch_template = {
            "k8s.io/cluster-autoscaler/node-template/label/workload": BATCH_TAINT["value"],
            "k8s.io/cluster-autoscaler/node-template/taint/workload": f"{BATCH_TAINT['value']}:NoSchedule",
        }
        pools = {
            "system": (args.system, "ON_DEMAND", {"workload": "system"}, [], {}),
            "spot": (
                args.spot,
                "SPOT",
                {"workload": BATCH_TAINT["value"]},
                [aws.eks.NodeGroupTaintArgs(**BATCH_TAINT)],
                batch_template,
            ),
        }
        groups = {}
        for pool, (settings, capacity, labels, taints, extra_tags) in pools.items():
            groups[pool] = aws.eks.NodeGroup(
                f"{name}-{pool}",
                cluster_name=args.cluster.name,
                node_group_name_prefix=f"{args.cluster_name}-{pool}-",
                node_role_arn=args.cluster.node_role_arn,
                subnet_ids=args.subnet_ids,
                capacity_type=capacity,
                instance_types=settings.machine_types,
                disk_size=settings.disk_gb,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=settings.min_nodes, desired_size=settings.desired_nodes, max_size=settings.max_nodes
                ),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                labels=labels,
                taints=taints,
                tags={**args.tags, **autoscaled, **extra_tags},
                # The cluster autoscaler owns the current size; `pulumi up` must not undo it.
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=args.cluster._node_policies,
                    ignore_changes=["scalingConfig.desiredSize"],
                ),
            )
        self.system_pool_name = groups["system"].node_group_name
        self.spot_pool_name = groups["spot"].node_group_name
        self.register_outputs({"system_pool": self.system_pool_name, "spot_pool": self.spot_pool_name})

"""`Keys` (Cloud KMS for the bucket and Kubernetes secrets), `Cluster` (private GKE) and `NodePools` (system + spot)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Network

import pulumi
import pulumi_gcp as gcp

from infra.gcp.admission import EVALUATION_MODE
from infra.gcp.storage import PODS_RANGE, SERVICES_RANGE
from infra.kubeconfig import gke_kubeconfig
from infra.naming import BATCH_TAINT, gcp_name, require_pool_roles
from infra.settings import NodePool

NODE_ROLES = [
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
]
ENCRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
# A private cluster's control plane reaches the nodes on 443 and 10250 only; an admission webhook that
# listens elsewhere needs its port opened from the control plane's range (policy-controller: 8443).
WEBHOOK_PORTS = ["8443"]


@dataclass(frozen=True)
class KeysArgs:
    project: str
    project_number: pulumi.Input[str]
    region: str
    name_prefix: str
    labels: dict[str, str]
    bucket_key: bool = True


class Keys(pulumi.ComponentResource):
    """A key ring with rotating keys for Kubernetes secrets, the image registry and, when asked, the
    artifact bucket: every store of the stack is encrypted with its own key (CMEK)."""

    ring_id: pulumi.Output[str]
    secrets_key_id: pulumi.Output[str]
    registry_key_id: pulumi.Output[str]
    bucket_key_id: pulumi.Output[str] | None
    # The keys' grants to Google's service agents: a store created before its grant fails to create.
    grants: list[pulumi.Resource]

    def __init__(self, name: str, args: KeysArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:Keys", name, None, opts)
        ring = gcp.kms.KeyRing(
            f"{name}-ring",
            name=gcp_name(args.name_prefix, "keys", max_length=63),
            project=args.project,
            location=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ring_id = ring.id
        on_ring = pulumi.ResourceOptions(parent=ring)
        agents = {
            "secrets": pulumi.Output.concat(
                "serviceAccount:service-", args.project_number, "@container-engine-robot.iam.gserviceaccount.com"
            ),
            "bucket": pulumi.Output.concat(
                "serviceAccount:service-", args.project_number, "@gs-project-accounts.iam.gserviceaccount.com"
            ),
            "registry": pulumi.Output.concat(
                "serviceAccount:service-", args.project_number, "@gcp-sa-artifactregistry.iam.gserviceaccount.com"
            ),
        }
        ids: dict[str, pulumi.Output[str]] = {}
        self.grants = []
        for purpose in ("secrets", "registry", "bucket") if args.bucket_key else ("secrets", "registry"):
            key = gcp.kms.CryptoKey(
                f"{name}-{purpose}",
                name=purpose,
                key_ring=ring.id,
                rotation_period=f"{90 * 24 * 3600}s",
                purpose="ENCRYPT_DECRYPT",
                labels=args.labels,
                opts=on_ring,
            )
            # Only the Google service agent that encrypts with the key may use it.
            grant = gcp.kms.CryptoKeyIAMMember(
                f"{name}-{purpose}-agent",
                crypto_key_id=key.id,
                role=ENCRYPTER,
                member=agents[purpose],
                opts=pulumi.ResourceOptions(parent=key),
            )
            self.grants.append(grant)
            ids[purpose] = key.id
        self.secrets_key_id = ids["secrets"]
        self.registry_key_id = ids["registry"]
        self.bucket_key_id = ids.get("bucket")
        self.register_outputs({"secrets_key_id": self.secrets_key_id})


@dataclass(frozen=True)
class ClusterArgs:
    project: str
    region: str
    cluster_name: str
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    master_cidr: IPv4Network
    authorized_cidrs: list[str]
    release_channel: str
    secrets_key_id: pulumi.Input[str]
    labels: dict[str, str]
    kubernetes_version: str = field(default="")
    deletion_protection: bool = True

    def __post_init__(self) -> None:
        if "0.0.0.0/0" in self.authorized_cidrs:
            raise ValueError("ClusterArgs.authorized_cidrs must not contain 0.0.0.0/0")
        if self.master_cidr.prefixlen != 28:
            raise ValueError(f"ClusterArgs.master_cidr must be a /28 (got {self.master_cidr})")


class Cluster(pulumi.ComponentResource):
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    node_service_account: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        nodes = gcp.serviceaccount.Account(
            f"{name}-nodes",
            account_id=gcp_name(args.cluster_name, "nodes"),
            display_name=f"{args.cluster_name} nodes (logs, metrics, image pulls only)",
            project=args.project,
            opts=child,
        )
        for role in NODE_ROLES:
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.split('/')[-1]}",
                project=args.project,
                role=role,
                member=nodes.email.apply(lambda email: f"serviceAccount:{email}"),
                opts=pulumi.ResourceOptions(parent=nodes),
            )
        public = bool(args.authorized_cidrs)
        cluster = gcp.container.Cluster(
            f"{name}-gke",
            name=args.cluster_name,
            project=args.project,
            location=args.region,
            network=args.network_id,
            subnetwork=args.subnet_id,
            # Node pools are managed separately; the default pool is removed right after creation.
            remove_default_node_pool=True,
            initial_node_count=1,
            node_config=gcp.container.ClusterNodeConfigArgs(
                service_account=nodes.email,
                shielded_instance_config=gcp.container.ClusterNodeConfigShieldedInstanceConfigArgs(
                    enable_secure_boot=True, enable_integrity_monitoring=True
                ),
                workload_metadata_config=gcp.container.ClusterNodeConfigWorkloadMetadataConfigArgs(mode="GKE_METADATA"),
            ),
            min_master_version=args.kubernetes_version or None,
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=args.release_channel),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(
                enable_private_nodes=True,
                enable_private_endpoint=not public,
                master_ipv4_cidr_block=str(args.master_cidr),
            ),
            master_authorized_networks_config=gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
                cidr_blocks=[
                    gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(cidr_block=cidr, display_name=cidr)
                    for cidr in args.authorized_cidrs
                ],
            ),
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE, services_secondary_range_name=SERVICES_RANGE
            ),
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{args.project}.svc.id.goog"
            ),
            database_encryption=gcp.container.ClusterDatabaseEncryptionArgs(
                state="ENCRYPTED", key_name=args.secrets_key_id
            ),
            enable_shielded_nodes=True,
            # Admission checks the project's Binary Authorization policy (`admission.BinaryAuthorization`).
            binary_authorization=gcp.container.ClusterBinaryAuthorizationArgs(evaluation_mode=EVALUATION_MODE),
            datapath_provider="ADVANCED_DATAPATH",  # Dataplane V2: NetworkPolicy enforced
            # Pod-to-pod traffic on one node goes through the VPC too, so the subnet's flow logs see it.
            enable_intranode_visibility=True,
            logging_config=gcp.container.ClusterLoggingConfigArgs(
                enable_components=["SYSTEM_COMPONENTS", "WORKLOADS", "APISERVER"]
            ),
            monitoring_config=gcp.container.ClusterMonitoringConfigArgs(
                enable_components=["SYSTEM_COMPONENTS", "POD", "DEPLOYMENT"],
                managed_prometheus=gcp.container.ClusterMonitoringConfigManagedPrometheusArgs(enabled=False),
            ),
            deletion_protection=args.deletion_protection,
            resource_labels=args.labels,
            opts=child,
        )
        gcp.compute.Firewall(
            f"{name}-webhooks",
            project=args.project,
            network=args.network_id,
            direction="INGRESS",
            description=f"{args.cluster_name}: the control plane calls the admission webhooks on the nodes",
            source_ranges=[str(args.master_cidr)],
            target_service_accounts=[nodes.email],
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=WEBHOOK_PORTS)],
            opts=child,
        )
        self.name = cluster.name
        self.endpoint = cluster.endpoint
        self.certificate_authority = cluster.master_auth.apply(lambda auth: auth.cluster_ca_certificate or "")
        self.node_service_account = nodes.email
        self.register_outputs({"name": self.name, "endpoint": self.endpoint})

    def kubeconfig(self) -> pulumi.Output[str]:
        """A kubeconfig that authenticates with `gke-gcloud-auth-plugin` (the caller's own Google identity)."""
        return pulumi.Output.all(self.name, self.endpoint, self.certificate_authority).apply(
            lambda v: json.dumps(gke_kubeconfig(v[0], v[1], v[2]))
        )


@dataclass(frozen=True)
class NodePoolsArgs:
    project: str
    region: str
    cluster_name: pulumi.Input[str]
    name_prefix: str
    node_service_account: pulumi.Input[str]
    system: NodePool
    spot: NodePool
    labels: dict[str, str]

    def __post_init__(self) -> None:
        require_pool_roles("NodePoolsArgs", self.system, self.spot)


class NodePools(pulumi.ComponentResource):
    system_pool_name: pulumi.Output[str]
    spot_pool_name: pulumi.Output[str]

    def __init__(self, name: str, args: NodePoolsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:NodePools", name, None, opts)
        names = {}
        for pool, settings in (("system", args.system), ("spot", args.spot)):
            batch = pool == "spot"
            created = gcp.container.NodePool(
                f"{name}-{pool}",
                name=gcp_name(args.name_prefix, pool, max_length=40),
                project=args.project,
                location=args.region,
                cluster=args.cluster_name,
                # GKE counts per zone in a regional cluster; the settings give totals for the cost model.
                autoscaling=gcp.container.NodePoolAutoscalingArgs(
                    total_min_node_count=settings.min_nodes,
                    total_max_node_count=settings.max_nodes,
                    location_policy="ANY" if batch else "BALANCED",
                ),
                initial_node_count=settings.min_nodes if batch else max(1, settings.desired_nodes // 3),
                management=gcp.container.NodePoolManagementArgs(auto_repair=True, auto_upgrade=True),
                node_config=gcp.container.NodePoolNodeConfigArgs(
                    machine_type=settings.machine_types[0],
                    disk_size_gb=settings.disk_gb,
                    disk_type="pd-balanced",
                    spot=batch,
                    service_account=args.node_service_account,
                    oauth_scopes=["https://www.googleapis.com/auth/cloud-platform"],
                    labels={"workload": BATCH_TAINT["value"] if batch else "system"},
                    taints=[gcp.container.NodePoolNodeConfigTaintArgs(**BATCH_TAINT)] if batch else [],
                    shielded_instance_config=gcp.container.NodePoolNodeConfigShieldedInstanceConfigArgs(
                        enable_secure_boot=True, enable_integrity_monitoring=True
                    ),
                    workload_metadata_config=gcp.container.NodePoolNodeConfigWorkloadMetadataConfigArgs(
                        mode="GKE_METADATA"
                    ),
                    resource_labels=args.labels,
                ),
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["initialNodeCount"]),
            )
            names[pool] = created.name
        self.system_pool_name = names["system"]
        self.spot_pool_name = names["spot"]
        self.register_outputs({"system_pool": self.system_pool_name, "spot_pool": self.spot_pool_name})

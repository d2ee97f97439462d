"""`Network` (VPC, subnet with pod/service ranges, NAT for private nodes) and `ObjectStore` (the GCS bucket)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network

import pulumi
import pulumi_gcp as gcp

from infra.naming import gcp_name

PODS_RANGE = "pods"
SERVICES_RANGE = "services"


@dataclass(frozen=True)
class NetworkArgs:
    project: str
    region: str
    name_prefix: str
    subnet_cidr: IPv4Network
    pods_cidr: IPv4Network
    services_cidr: IPv4Network

    def __post_init__(self) -> None:
        ranges = {"subnet_cidr": self.subnet_cidr, "pods_cidr": self.pods_cidr, "services_cidr": self.services_cidr}
        names = list(ranges)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if ranges[a].overlaps(ranges[b]):
                    raise ValueError(f"NetworkArgs.{a} ({ranges[a]}) overlaps {b} ({ranges[b]})")


class Network(pulumi.ComponentResource):
    network_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        network = gcp.compute.Network(
            f"{name}-vpc",
            name=gcp_name(args.name_prefix, "vpc", max_length=63),
            project=args.project,
            auto_create_subnetworks=False,
            opts=child,
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-nodes",
            name=gcp_name(args.name_prefix, "nodes", max_length=63),
            project=args.project,
            region=args.region,
            network=network.id,
            ip_cidr_range=str(args.subnet_cidr),
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=str(args.pods_cidr)),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=SERVICES_RANGE, ip_cidr_range=str(args.services_cidr)
                ),
            ],
            log_config=gcp.compute.SubnetworkLogConfigArgs(aggregation_interval="INTERVAL_10_MIN", flow_sampling=0.1),
            opts=pulumi.ResourceOptions(parent=network),
        )
        router = gcp.compute.Router(
            f"{name}-router",
            name=gcp_name(args.name_prefix, "router", max_length=63),
            project=args.project,
            region=args.region,
            network=network.id,
            opts=pulumi.ResourceOptions(parent=network),
        )
        # Private nodes have no public address: Cloud NAT lets them pull images and reach Google APIs.
        gcp.compute.RouterNat(
            f"{name}-nat",
            name=gcp_name(args.name_prefix, "nat", max_length=63),
            project=args.project,
            region=args.region,
            router=router.name,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=pulumi.ResourceOptions(parent=router),
        )
        self.network_id = network.id
        self.subnet_id = subnet.id
        self.register_outputs({"network_id": self.network_id, "subnet_id": self.subnet_id})


@dataclass(frozen=True)
class ObjectStoreArgs:
    project: str
    region: str
    name_prefix: str
    labels: dict[str, str]
    # Cloud KMS key for the bucket (CMEK); None: Google-managed encryption.
    kms_key_id: pulumi.Input[str] | None = None
    force_destroy: bool = False
    archive_after_days: int = 30
    noncurrent_expire_days: int = 365
    abort_incomplete_upload_days: int = 7


class ObjectStore(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]

    def __init__(self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:ObjectStore", name, None, opts)
        rule = gcp.storage.BucketLifecycleRuleArgs
        action = gcp.storage.BucketLifecycleRuleActionArgs
        condition = gcp.storage.BucketLifecycleRuleConditionArgs
        bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            project=args.project,
            location=args.region.upper(),
            storage_class="STANDARD",
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            force_destroy=args.force_destroy,
            encryption=gcp.storage.BucketEncryptionArgs(default_kms_key_name=args.kms_key_id)
            if args.kms_key_id is not None
            else None,
            lifecycle_rules=[
                # Old artifacts to Coldline; superseded versions expire; abandoned uploads are removed.
                rule(
                    action=action(type="SetStorageClass", storage_class="COLDLINE"),
                    condition=condition(age=args.archive_after_days, matches_storage_classes=["STANDARD"]),
                ),
                rule(
                    action=action(type="Delete"),
                    condition=condition(days_since_noncurrent_time=args.noncurrent_expire_days, with_state="ARCHIVED"),
                ),
                rule(
                    action=action(type="AbortIncompleteMultipartUpload"),
                    condition=condition(age=args.abort_incomplete_upload_days),
                ),
            ],
            labels=args.labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.bucket_name = bucket.name
        self.register_outputs({"bucket_name": self.bucket_name})

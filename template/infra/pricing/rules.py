"""Pricing rules per resource family: node pools, NAT, buckets, logs, volumes, image storage. Each
turns one planned resource into priced lines, or says why it cannot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from infra.naming import IMAGES
from infra.pricing.assumptions import Assumptions
from infra.pricing.lines import LIFECYCLE, SCALE_TO_ZERO, SPOT, Line, NotPriced, PricedResource
from infra.pricing.table import PriceTable


def _get(props: Mapping[str, Any] | None, *path: str | int) -> Any:
    value: Any = props
    for step in path:
        if isinstance(step, int):
            if isinstance(value, str) or not isinstance(value, Sequence) or len(value) <= step:
                return None
            value = value[step]
        elif isinstance(value, Mapping):
            value = value.get(step)
        else:
            return None
    return value


def _items(value: Any) -> list[Any]:
    if value is None or isinstance(value, str):
        return []
    return list(value) if isinstance(value, Sequence) else []


def _number(value: Any, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


@dataclass
class Pricing:
    """Everything a pricing rule may read: the table, the assumptions and the whole stack."""

    table: PriceTable
    assumptions: Assumptions
    resources: Sequence[PricedResource]
    cloud: str
    region: str

    @property
    def hours(self) -> float:
        return self.table.hours_per_month

    def line(
        self,
        resource: PricedResource,
        item: str,
        quantity: float,
        key: str,
        *,
        unit_usd: float | None = None,
        unit: str | None = None,
        baseline: float | None = None,
        savings: Mapping[str, float] | None = None,
        price_ref: str | None = None,
    ) -> Line:
        """`quantity` units at the price `key` (or `unit_usd`); the baseline defaults to the same amount."""
        if unit_usd is None:
            unit_usd = self.table.price(self.cloud, key, self.region)
        monthly = quantity * unit_usd
        return Line(
            cloud=self.cloud,
            resource=resource.name,
            type=resource.type,
            urn=resource.urn,
            item=item,
            quantity=round(quantity, 4),
            unit=unit or self.table.cloud(self.cloud).prices[key].unit,
            unit_usd=round(unit_usd, 6),
            monthly_usd=round(monthly, 4),
            baseline_usd=round(monthly if baseline is None else baseline, 4),
            price=price_ref or f"{self.cloud}.prices.{key}",
            savings={k: round(v, 4) for k, v in (savings or {}).items() if v},
        )

    def pool(self, role: str | None, fallback_nodes: float) -> tuple[float, float]:
        """Average nodes and hours a month of the pool with this role, from the stack settings
        (a pool the settings do not describe: the resource's node count, always on)."""
        found = self.assumptions.pools.get(self.cloud, {}).get(role or "")
        return (fallback_nodes, self.hours) if found is None else (found.nodes, found.hours)

    def count(self, resource_type: str) -> int:
        return sum(1 for r in self.resources if r.type == resource_type)


def _nodes(
    p: Pricing,
    res: PricedResource,
    *,
    machine: str,
    spot: bool,
    role: str | None,
    fallback: float,
    disk: tuple[float, str],
) -> list[Line]:
    on_demand = p.table.instance(p.cloud, machine, p.region)
    if on_demand is None:
        raise NotPriced(f"instance type {machine} is not in the {p.cloud} price table (pipelines/prices.yaml)")
    nodes, hours = p.pool(role, fallback)
    discount = p.table.cloud(p.cloud).spot_discount if spot else 0.0
    node_hours = nodes * hours
    always_on = nodes * p.hours
    compute = p.line(
        res,
        f"{machine} {'spot' if spot else 'on-demand'} nodes",
        node_hours,
        "",
        unit_usd=on_demand * (1 - discount),
        unit="node-hour",
        baseline=always_on * on_demand,
        savings={SPOT: node_hours * on_demand * discount, SCALE_TO_ZERO: (always_on - node_hours) * on_demand},
        price_ref=f"{p.cloud}.instances.{machine}" + (f" x (1 - {p.cloud}.spot_discount)" if spot else ""),
    )
    disk_gb, disk_key = disk
    disk_price = p.table.price(p.cloud, disk_key, p.region)
    disk_line = p.line(
        res,
        "node disks",
        disk_gb * node_hours / p.hours,
        disk_key,
        baseline=disk_gb * nodes * disk_price,
        savings={SCALE_TO_ZERO: disk_gb * (always_on - node_hours) / p.hours * disk_price},
    )
    return [compute, disk_line]


def _role(labels: Any, taints: Any) -> str | None:
    role = _get(labels, "workload")
    if isinstance(role, str):
        return role
    return "batch" if any(_get(t, "key") == "workload" for t in _items(taints)) else None


def _eks_node_group(p: Pricing, res: PricedResource) -> list[Line]:
    machine = _get(res.props, "instanceTypes", 0)
    if not isinstance(machine, str):
        raise NotPriced("the node group names no instance type (a launch template's type is not priced)")
    spot = _get(res.props, "capacityType") == "SPOT"
    fallback = _number(_get(res.props, "scalingConfig", "desiredSize"), 1)
    # A managed node group without a launch template gets a gp2 root volume of `diskSize` GB (20 by default).
    disk = (_number(_get(res.props, "diskSize"), 20), "ebs_gp2_gb")
    role = _role(_get(res.props, "labels"), _get(res.props, "taints"))
    return _nodes(p, res, machine=machine, spot=spot, role=role, fallback=fallback, disk=disk)


GKE_DISKS = {"pd-balanced": "pd_balanced_gb", "pd-standard": "pd_standard_gb", "pd-ssd": "pd_ssd_gb"}


def _gke_node_pool(p: Pricing, res: PricedResource) -> list[Line]:
    config = _get(res.props, "nodeConfig")
    machine = _get(config, "machineType") or "e2-medium"
    spot = bool(_get(config, "spot") or _get(config, "preemptible"))
    fallback = _number(_get(res.props, "nodeCount") or _get(res.props, "initialNodeCount"), 1)
    disk_type = _get(config, "diskType") or "pd-balanced"
    if disk_type not in GKE_DISKS:
        raise NotPriced(f"disk type {disk_type} is not in the gcp price table")
    disk = (_number(_get(config, "diskSizeGb"), 100), GKE_DISKS[disk_type])
    role = _role(_get(config, "labels"), _get(config, "taints"))
    return _nodes(p, res, machine=machine, spot=spot, role=role, fallback=fallback, disk=disk)


def _fixed_hourly(key: str, item: str) -> Callable[[Pricing, PricedResource], list[Line]]:
    def price(p: Pricing, res: PricedResource) -> list[Line]:
        return [p.line(res, item, p.hours, key)]

    return price


def _aws_nat_gateway(p: Pricing, res: PricedResource) -> list[Line]:
    gb = p.assumptions.nat_gb_per_month / max(p.count(res.type), 1)
    return [
        p.line(res, "gateway", p.hours, "nat_gateway_hour"),
        p.line(res, "data processed", gb, "nat_gateway_gb"),
    ]


def _gcp_router_nat(p: Pricing, res: PricedResource) -> list[Line]:
    # Charged per VM using the gateway (at most 32): the average node count of the cloud's pools.
    node_hours = sum(pool.nodes * pool.hours for pool in p.assumptions.pools.get(p.cloud, {}).values())
    vm_hours = min(node_hours, 32 * p.hours)
    return [
        p.line(res, "gateway (per VM using it)", vm_hours, "cloud_nat_vm_hour"),
        p.line(res, "data processed", p.assumptions.nat_gb_per_month, "cloud_nat_gb"),
    ]


S3_CLASSES = {
    "INTELLIGENT_TIERING": "s3_intelligent_tiering_gb",
    "STANDARD_IA": "s3_standard_ia_gb",
    "ONEZONE_IA": "s3_standard_ia_gb",
    "GLACIER_IR": "s3_glacier_ir_gb",
    "GLACIER": "s3_glacier_gb",
    "DEEP_ARCHIVE": "s3_deep_archive_gb",
}
GCS_CLASSES = {
    "STANDARD": "gcs_standard_gb",
    "NEARLINE": "gcs_nearline_gb",
    "COLDLINE": "gcs_coldline_gb",
    "ARCHIVE": "gcs_archive_gb",
}


def _storage(p: Pricing, res: PricedResource, standard: str, archive: str | None, archive_class: str) -> list[Line]:
    stored = p.assumptions.stored_gb
    standard_price = p.table.price(p.cloud, standard, p.region)
    if archive is None:
        return [p.line(res, "storage (standard class)", stored, standard)]
    archived = stored * p.assumptions.archived_share_pct / 100
    archive_price = p.table.price(p.cloud, archive, p.region)
    return [
        p.line(res, "storage (standard class)", stored - archived, standard),
        p.line(
            res,
            f"storage ({archive_class} after the lifecycle transition)",
            archived,
            archive,
            baseline=archived * standard_price,
            savings={LIFECYCLE: archived * (standard_price - archive_price)},
        ),
    ]


def _s3_bucket(p: Pricing, res: PricedResource) -> list[Line]:
    lifecycles = [
        r
        for r in p.resources
        if r.type == "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration" and r.depends_on(res.urn)
    ]
    target = None
    for lifecycle in lifecycles:
        for rule in _items(_get(lifecycle.props, "rules")):
            if _get(rule, "status") == "Enabled" and (cls := _get(rule, "transitions", 0, "storageClass")):
                target = target or cls
    if target is not None and target not in S3_CLASSES:
        raise NotPriced(f"the lifecycle moves objects to {target}, which the aws price table does not list")
    return _storage(p, res, "s3_standard_gb", S3_CLASSES.get(target or ""), target or "")


def _gcs_bucket(p: Pricing, res: PricedResource) -> list[Line]:
    base = str(_get(res.props, "storageClass") or "STANDARD")
    target = None
    for rule in _items(_get(res.props, "lifecycleRules")):
        if _get(rule, "action", "type") == "SetStorageClass":
            target = target or _get(rule, "action", "storageClass")
    for cls in (base, target):
        if cls is not None and cls not in GCS_CLASSES:
            raise NotPriced(f"storage class {cls} is not in the gcp price table")
    return _storage(p, res, GCS_CLASSES[base], GCS_CLASSES.get(target or ""), target or "")


def _log_group(p: Pricing, res: PricedResource) -> list[Line]:
    # The cloud's log volume is shared evenly by its log groups; stored GB at steady state is
    # a month's ingest times the retention in months (a year when logs never expire).
    gb = p.assumptions.log_gb_per_month / max(p.count(res.type), 1)
    months = _number(_get(res.props, "retentionInDays"), 365) / 30
    return [
        p.line(res, "ingestion", gb, "cloudwatch_logs_ingest_gb"),
        p.line(res, f"storage ({months:.1f} months kept)", gb * months, "cloudwatch_logs_storage_gb"),
    ]


def _gcp_log_bucket(p: Pricing, res: PricedResource) -> list[Line]:
    gb = p.assumptions.log_gb_per_month
    extra_months = max(_number(_get(res.props, "retentionDays"), 30) - 30, 0) / 30
    return [
        p.line(res, "ingestion beyond the free 50 GiB", max(gb - 50, 0), "logging_ingest_gb"),
        p.line(res, "retention beyond 30 days", gb * extra_months, "logging_retention_gb"),
    ]


def _eks_addon(p: Pricing, res: PricedResource) -> list[Line]:
    if _get(res.props, "addonName") == "amazon-cloudwatch-observability":
        raise NotPriced("Container Insights bills per observation and metric, which depends on pod and node counts")
    return []


def _alert_policy(p: Pricing, res: PricedResource) -> list[Line]:
    return [p.line(res, "conditions", len(_items(_get(res.props, "conditions"))) or 1, "alert_condition_month")]


def _k8s_service(p: Pricing, res: PricedResource) -> list[Line]:
    if _get(res.props, "spec", "type") != "LoadBalancer":
        return []
    key = "nlb_hour" if p.cloud == "aws" else "forwarding_rule_hour"
    return [p.line(res, "load balancer", p.hours, key)]


VOLUME_CLASSES = {
    "aws": {None: "ebs_gp2_gb", "gp2": "ebs_gp2_gb", "gp3": "ebs_gp3_gb"},
    "gcp": {
        None: "pd_balanced_gb",
        "standard-rwo": "pd_balanced_gb",
        "standard": "pd_standard_gb",
        "premium-rwo": "pd_ssd_gb",
    },
}


_QUANTITY_GB = {"Ki": 1 / 1024**2, "Mi": 1 / 1024, "Gi": 1.0, "Ti": 1024.0, "K": 1e-6, "M": 1e-3, "G": 1.0, "T": 1e3}


def _gigabytes(quantity: str) -> float:
    for suffix, factor in _QUANTITY_GB.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 1e9


def _k8s_stateful_set(p: Pricing, res: PricedResource) -> list[Line]:
    lines = []
    replicas = _number(_get(res.props, "spec", "replicas"), 1)
    for claim in _items(_get(res.props, "spec", "volumeClaimTemplates")):
        size = _get(claim, "spec", "resources", "requests", "storage")
        storage_class = _get(claim, "spec", "storageClassName")
        key = VOLUME_CLASSES[p.cloud].get(storage_class)
        if not isinstance(size, str) or key is None:
            raise NotPriced(f"volume claim {_get(claim, 'metadata', 'name')}: size {size!r}, class {storage_class!r}")
        item = f"volume {_get(claim, 'metadata', 'name')} ({storage_class or 'default class'})"
        lines.append(p.line(res, item, replicas * _gigabytes(size), key))
    return lines


def _image_storage(images: int) -> Callable[[Pricing, PricedResource], list[Line]]:
    """A registry repository holding `images` app images, `image_gb` each (shared layers stored once)."""

    def price(p: Pricing, res: PricedResource) -> list[Line]:
        key = "ecr_storage_gb" if p.cloud == "aws" else "artifact_registry_storage_gb"
        return [p.line(res, "image storage", images * p.assumptions.image_gb, key)]

    return price


PRICING: dict[str, Callable[[Pricing, PricedResource], list[Line]]] = {
    "aws:ecr/repository:Repository": _image_storage(1),
    "gcp:artifactregistry/repository:Repository": _image_storage(len(IMAGES)),
    "aws:eks/cluster:Cluster": _fixed_hourly("eks_cluster_hour", "control plane"),
    "aws:eks/nodeGroup:NodeGroup": _eks_node_group,
    "aws:eks/addon:Addon": _eks_addon,
    "aws:ec2/natGateway:NatGateway": _aws_nat_gateway,
    "aws:ec2/eip:Eip": _fixed_hourly("public_ipv4_hour", "public IPv4 address"),
    "aws:kms/key:Key": lambda p, res: [p.line(res, "key", 1, "kms_key_month")],
    "aws:s3/bucket:Bucket": _s3_bucket,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/metricAlarm:MetricAlarm": lambda p, res: [p.line(res, "alarm", 1, "cloudwatch_alarm_month")],
    "gcp:container/cluster:Cluster": _fixed_hourly("gke_cluster_hour", "control plane"),
    "gcp:container/nodePool:NodePool": _gke_node_pool,
    "gcp:compute/routerNat:RouterNat": _gcp_router_nat,
    "gcp:storage/bucket:Bucket": _gcs_bucket,
    "gcp:kms/cryptoKey:CryptoKey": lambda p, res: [p.line(res, "key version", 1, "kms_key_version_month")],
    "gcp:logging/projectBucketConfig:ProjectBucketConfig": _gcp_log_bucket,
    "gcp:monitoring/alertPolicy:AlertPolicy": _alert_policy,
    "kubernetes:core/v1:Service": _k8s_service,
    "kubernetes:apps/v1:StatefulSet": _k8s_stateful_set,
}

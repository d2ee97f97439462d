"""The monthly cost of a stack, from its planned resources, the stack's assumptions and a price table.

Pure arithmetic over plain data: a resource (type, name, properties as the engine sends them) is
priced by the rule for its type, with list prices from `pipelines/prices.yaml` (each figure with its
source and date) and the assumptions no resource states (node hours, stored GB, log volume) from the
stack settings. A resource nobody knows how to price is reported as *unpriced*, never as zero.

Each line also carries the *baseline*: the same capacity bought the expensive way (on-demand, always
on, every byte in the standard storage class), so the savings of spot pools, scale-to-zero and
lifecycle rules are visible per line. `mlops cost`, the budget policy of the CrossGuard pack and
`mlops gate` all call `estimate()`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML

from infra.naming import IMAGES
from infra.settings import AWS_REGIONS, GCP_REGIONS

if TYPE_CHECKING:
    from infra.settings import Settings

PRICES_FILE = Path(__file__).with_name("prices.yaml")
OFFERED_REGIONS = {"aws": AWS_REGIONS, "gcp": GCP_REGIONS}
SPOT = "spot"
SCALE_TO_ZERO = "scale-to-zero"
LIFECYCLE = "lifecycle"
SAVING_KINDS = (SPOT, SCALE_TO_ZERO, LIFECYCLE)


class PriceTableError(ValueError):
    """The price table is malformed: the message names the file and the key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Price(_Frozen):
    usd: float | dict[str, float]
    unit: str
    source: str = Field(pattern=r"^https://")
    as_of: date
    factor: Literal["compute", "storage"] | None = None
    note: str = ""


class CloudPrices(_Frozen):
    reference_region: str
    region_factors: dict[Literal["compute", "storage"], dict[str, float]]
    region_factors_source: str
    instances: dict[str, float]
    instances_source: str = Field(pattern=r"^https://")
    instances_as_of: date
    spot_discount: float = Field(ge=0, lt=1)
    spot_source: str = Field(pattern=r"^https://")
    spot_as_of: date
    prices: dict[str, Price]


class PriceTable(_Frozen):
    currency: Literal["USD"]
    hours_per_month: float = Field(gt=0, le=744)
    aws: CloudPrices
    gcp: CloudPrices
    no_charge: dict[str, str]

    @model_validator(mode="after")
    def _every_offered_region(self) -> Self:
        for cloud, regions in OFFERED_REGIONS.items():
            prices: CloudPrices = getattr(self, cloud)
            for kind in ("compute", "storage"):
                missing = set(regions) - set(prices.region_factors.get(kind, {}))
                if missing:
                    raise ValueError(f"{cloud}.region_factors.{kind} lacks {', '.join(sorted(missing))}")
            for key, price in prices.prices.items():
                if isinstance(price.usd, dict) and (missing := set(regions) - set(price.usd)):
                    raise ValueError(f"{cloud}.prices.{key}.usd lacks {', '.join(sorted(missing))}")
        return self

    def cloud(self, cloud: str) -> CloudPrices:
        return self.aws if cloud == "aws" else self.gcp

    def price(self, cloud: str, key: str, region: str) -> float:
        prices = self.cloud(cloud)
        entry = prices.prices[key]
        if isinstance(entry.usd, dict):
            return entry.usd[region]
        return entry.usd * (prices.region_factors[entry.factor][region] if entry.factor else 1.0)

    def instance(self, cloud: str, machine_type: str, region: str) -> float | None:
        prices = self.cloud(cloud)
        hourly = prices.instances.get(machine_type)
        return None if hourly is None else hourly * prices.region_factors["compute"][region]

    def no_charge_reason(self, resource_type: str) -> str | None:
        for pattern, reason in self.no_charge.items():
            if resource_type == pattern or (pattern.endswith("*") and resource_type.startswith(pattern[:-1])):
                return reason
        return None


def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    try:
        return PriceTable.model_validate(YAML(typ="safe").load(path.read_text()))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise PriceTableError(f"{path}: {problems}") from None


@cache
def shipped_prices() -> PriceTable:
    return load_prices()


class PoolAssumption(_Frozen):
    nodes: float = Field(ge=0)
    hours: float = Field(gt=0, le=744)


class Assumptions(_Frozen):
    """What the estimate assumes that the resources do not say; built from the stack settings."""

    environment: str
    budget_usd: float | None
    regions: dict[str, str]
    # cloud -> pool role (`system`, `batch`) -> average nodes and hours a month
    pools: dict[str, dict[str, PoolAssumption]]
    stored_gb: float
    archived_share_pct: float
    log_gb_per_month: float
    nat_gb_per_month: float
    image_gb: float = 2.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Assumptions:
        regions: dict[str, str] = {}
        pools: dict[str, dict[str, PoolAssumption]] = {}
        for cloud, section in (("aws", settings.aws), ("gcp", settings.gcp)):
            if section is None:
                continue
            regions[cloud] = section.region
            pools[cloud] = {
                role: PoolAssumption(nodes=pool.desired_nodes, hours=pool.hours_per_month)
                for role, pool in (("system", section.cluster.system_pool), ("batch", section.cluster.spot_pool))
            }
        return cls(
            environment=settings.environment.value,
            budget_usd=settings.budget.monthly_usd if settings.budget else None,
            regions=regions,
            pools=pools,
            stored_gb=settings.storage.expected_gb,
            archived_share_pct=settings.cost.archived_share_pct,
            log_gb_per_month=settings.cost.log_gb_per_month,
            nat_gb_per_month=settings.cost.nat_gb_per_month,
            image_gb=settings.cost.image_gb,
        )

    def describe(self) -> list[str]:
        """The assumptions as sentences, for the report."""
        said = []
        for cloud, roles in self.pools.items():
            for role, pool in roles.items():
                said.append(f"{cloud} {role} pool: {pool.nodes:g} nodes on average, {pool.hours:g} h a month each")
        said += [
            f"{self.stored_gb:g} GB of artifacts per bucket, {self.archived_share_pct:g} % of it old enough to archive",
            f"{self.log_gb_per_month:g} GB of logs and {self.nat_gb_per_month:g} GB through NAT per cloud a month",
            f"{self.image_gb:g} GB of container images kept per app image and cloud",
        ]
        return said


class PricedResource(Protocol):
    """What the estimate reads of a resource: the same fields a stack policy sees."""

    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def urn(self) -> str: ...
    @property
    def props(self) -> Mapping[str, Any]: ...
    def depends_on(self, urn: str) -> bool: ...


@dataclass(frozen=True)
class Line:
    """One priced item: quantity x unit price = monthly; baseline is the expensive way to buy the same."""

    cloud: str
    resource: str
    type: str
    urn: str
    item: str
    quantity: float
    unit: str
    unit_usd: float
    monthly_usd: float
    baseline_usd: float
    price: str
    savings: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.resource} / {self.item}"


@dataclass(frozen=True)
class Unpriced:
    resource: str
    type: str
    reason: str


@dataclass
class Estimate:
    stack: str
    environment: str
    assumptions: Assumptions
    lines: list[Line] = field(default_factory=list)
    unpriced: list[Unpriced] = field(default_factory=list)
    no_charge: dict[str, int] = field(default_factory=dict)

    @property
    def monthly_usd(self) -> float:
        return round(sum(line.monthly_usd for line in self.lines), 2)

    @property
    def baseline_usd(self) -> float:
        return round(sum(line.baseline_usd for line in self.lines), 2)

    @property
    def savings(self) -> dict[str, float]:
        return {kind: round(sum(line.savings.get(kind, 0.0) for line in self.lines), 2) for kind in SAVING_KINDS}

    @property
    def savings_pct(self) -> float:
        return round(100 * (1 - self.monthly_usd / self.baseline_usd), 1) if self.baseline_usd else 0.0

    @property
    def budget_used_pct(self) -> float | None:
        budget = self.assumptions.budget_usd
        return round(100 * self.monthly_usd / budget, 1) if budget else None

    def by_cloud(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in self.lines:
            totals[line.cloud] = totals.get(line.cloud, 0.0) + line.monthly_usd
        return {cloud: round(total, 2) for cloud, total in sorted(totals.items())}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "environment": self.environment,
            "monthly_usd": self.monthly_usd,
            "by_cloud": self.by_cloud(),
            "budget_usd": self.assumptions.budget_usd,
            "budget_used_pct": self.budget_used_pct,
            "baseline_usd": self.baseline_usd,
            "savings_pct": self.savings_pct,
            "savings": self.savings,
            "lines": [asdict(line) for line in self.lines],
            "unpriced": [asdict(item) for item in self.unpriced],
            "no_charge": self.no_charge,
            "assumptions": self.assumptions.model_dump(mode="json"),
        }


class NotPriced(Exception):
    """Raised by a pricing rule that cannot price a resource; the message is the reason."""


# --- reading properties (plain dicts and the engine's read-only proxies alike) ---------------------


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


# --- the pricing rules ---------------------------------------------------------------------------


@dataclass
class _Pricing:
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
    p: _Pricing,
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


def _eks_node_group(p: _Pricing, res: PricedResource) -> list[Line]:
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


def _gke_node_pool(p: _Pricing, res: PricedResource) -> list[Line]:
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


def _fixed_hourly(key: str, item: str) -> Callable[[_Pricing, PricedResource], list[Line]]:
    def price(p: _Pricing, res: PricedResource) -> list[Line]:
        return [p.line(res, item, p.hours, key)]

    return price


def _aws_nat_gateway(p: _Pricing, res: PricedResource) -> list[Line]:
    gb = p.assumptions.nat_gb_per_month / max(p.count(res.type), 1)
    return [
        p.line(res, "gateway", p.hours, "nat_gateway_hour"),
        p.line(res, "data processed", gb, "nat_gateway_gb"),
    ]


def _gcp_router_nat(p: _Pricing, res: PricedResource) -> list[Line]:
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


def _storage(p: _Pricing, res: PricedResource, standard: str, archive: str | None, archive_class: str) -> list[Line]:
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


def _s3_bucket(p: _Pricing, res: PricedResource) -> list[Line]:
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


def _gcs_bucket(p: _Pricing, res: PricedResource) -> list[Line]:
    base = str(_get(res.props, "storageClass") or "STANDARD")
    target = None
    for rule in _items(_get(res.props, "lifecycleRules")):
        if _get(rule, "action", "type") == "SetStorageClass":
            target = target or _get(rule, "action", "storageClass")
    for cls in (base, target):
        if cls is not None and cls not in GCS_CLASSES:
            raise NotPriced(f"storage class {cls} is not in the gcp price table")
    return _storage(p, res, GCS_CLASSES[base], GCS_CLASSES.get(target or ""), target or "")


def _log_group(p: _Pricing, res: PricedResource) -> list[Line]:
    # The cloud's log volume is shared evenly by its log groups; stored GB at steady state is
    # a month's ingest times the retention in months (a year when logs never expire).
    gb = p.assumptions.log_gb_per_month / max(p.count(res.type), 1)
    months = _number(_get(res.props, "retentionInDays"), 365) / 30
    return [
        p.line(res, "ingestion", gb, "cloudwatch_logs_ingest_gb"),
        p.line(res, f"storage ({months:.1f} months kept)", gb * months, "cloudwatch_logs_storage_gb"),
    ]


def _gcp_log_bucket(p: _Pricing, res: PricedResource) -> list[Line]:
    gb = p.assumptions.log_gb_per_month
    extra_months = max(_number(_get(res.props, "retentionDays"), 30) - 30, 0) / 30
    return [
        p.line(res, "ingestion beyond the free 50 GiB", max(gb - 50, 0), "logging_ingest_gb"),
        p.line(res, "retention beyond 30 days", gb * extra_months, "logging_retention_gb"),
    ]


def _eks_addon(p: _Pricing, res: PricedResource) -> list[Line]:
    if _get(res.props, "addonName") == "amazon-cloudwatch-observability":
        raise NotPriced("Container Insights bills per observation and metric, which depends on pod and node counts")
    return []


def _alert_policy(p: _Pricing, res: PricedResource) -> list[Line]:
    return [p.line(res, "conditions", len(_items(_get(res.props, "conditions"))) or 1, "alert_condition_month")]


def _k8s_service(p: _Pricing, res: PricedResource) -> list[Line]:
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


def _k8s_stateful_set(p: _Pricing, res: PricedResource) -> list[Line]:
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


def _image_storage(images: int) -> Callable[[_Pricing, PricedResource], list[Line]]:
    """A registry repository holding `images` app images, `image_gb` each (shared layers stored once)."""

    def price(p: _Pricing, res: PricedResource) -> list[Line]:
        key = "ecr_storage_gb" if p.cloud == "aws" else "artifact_registry_storage_gb"
        return [p.line(res, "image storage", images * p.assumptions.image_gb, key)]

    return price


PRICING: dict[str, Callable[[_Pricing, PricedResource], list[Line]]] = {
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


def cloud_of(resource: PricedResource, clouds: Iterable[str]) -> str | None:
    """The cloud that bills a resource: its provider package, or for Kubernetes objects the cluster
    they run on (the program names them `<cloud>-…`; a one-cloud stack has one cluster)."""
    package = resource.type.split(":", 1)[0]
    if package in OFFERED_REGIONS:
        return package
    clouds = list(clouds)
    if package == "kubernetes":
        prefix = resource.name.split("-", 1)[0]
        if prefix in clouds:
            return prefix
        return clouds[0] if len(clouds) == 1 else None
    return None


def estimate(
    stack: str,
    resources: Sequence[PricedResource],
    assumptions: Assumptions,
    table: PriceTable | None = None,
) -> Estimate:
    """Price every resource of a stack. Component resources (no cloud object) are the caller's to leave out."""
    table = table or shipped_prices()
    result = Estimate(stack=stack, environment=assumptions.environment, assumptions=assumptions)
    no_charge: Counter[str] = Counter()
    clouds = list(assumptions.regions)
    for resource in resources:
        cloud = cloud_of(resource, clouds)
        rule = PRICING.get(resource.type)
        if cloud is None or cloud not in assumptions.regions:
            if resource.type.startswith("kubernetes:") and not clouds:
                no_charge[resource.type] += 1  # an existing cluster: nothing new on a cloud bill
                continue
            if rule is None and table.no_charge_reason(resource.type):
                no_charge[resource.type] += 1
                continue
            result.unpriced.append(Unpriced(resource.name, resource.type, "no region known for this resource's cloud"))
            continue
        if rule is None:
            if table.no_charge_reason(resource.type):
                no_charge[resource.type] += 1
            else:
                result.unpriced.append(
                    Unpriced(resource.name, resource.type, "no pricing rule for this resource type (pipelines/cost.py)")
                )
            continue
        context = _Pricing(table, assumptions, resources, cloud, assumptions.regions[cloud])
        try:
            lines = rule(context, resource)
        except NotPriced as exc:
            result.unpriced.append(Unpriced(resource.name, resource.type, str(exc)))
            continue
        if not lines:
            no_charge[resource.type] += 1
        result.lines += lines
    result.no_charge = dict(sorted(no_charge.items()))
    return result


@dataclass(frozen=True)
class LineChange:
    key: str
    before_usd: float
    after_usd: float

    @property
    def delta_usd(self) -> float:
        return round(self.after_usd - self.before_usd, 2)


@dataclass
class CostChange:
    """What a change (a pull request) does to a stack's monthly estimate."""

    stack: str
    before: Estimate | None
    after: Estimate

    @property
    def before_usd(self) -> float:
        return self.before.monthly_usd if self.before else 0.0

    @property
    def delta_usd(self) -> float:
        return round(self.after.monthly_usd - self.before_usd, 2)

    @property
    def delta_pct(self) -> float | None:
        return round(100 * self.delta_usd / self.before_usd, 1) if self.before_usd else None

    def changes(self) -> list[LineChange]:
        before = _by_key(self.before.lines if self.before else [])
        after = _by_key(self.after.lines)
        found = [
            LineChange(key, round(before.get(key, 0.0), 2), round(after.get(key, 0.0), 2))
            for key in dict.fromkeys([*before, *after])
        ]
        return sorted((c for c in found if abs(c.delta_usd) >= 0.01), key=lambda c: -abs(c.delta_usd))

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "before_usd": self.before_usd if self.before else None,
            "after_usd": self.after.monthly_usd,
            "delta_usd": self.delta_usd,
            "delta_pct": self.delta_pct,
            "changes": [{**asdict(c), "delta_usd": c.delta_usd} for c in self.changes()],
        }


def _by_key(lines: Iterable[Line]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in lines:
        totals[line.key] = totals.get(line.key, 0.0) + line.monthly_usd
    return totals

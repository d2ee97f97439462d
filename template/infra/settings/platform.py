"""Settings of the platform's infrastructure: clusters and node pools, storage, budgets, cost
assumptions, GitHub trust, access and tags.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from infra.settings.base import (
    OPEN_CIDR,
    AwsRegion,
    Email,
    Frozen,
    GcpRegion,
    KubernetesVersion,
    Label,
    Principal,
    github_repository_name,
)


class NodePool(Frozen):
    """A group of worker nodes. Sizes are node counts; `desired_nodes` is what the cost model assumes."""

    machine_types: list[str] = Field(min_length=1, max_length=10)
    min_nodes: int = Field(ge=0, le=200)
    max_nodes: int = Field(ge=1, le=200)
    desired_nodes: int = Field(ge=0, le=200)
    disk_gb: int = Field(default=50, ge=20, le=4000)
    spot: bool
    # Hours a month a node of this pool runs on average (730 = always on); the cost model uses it.
    hours_per_month: float = Field(default=730, gt=0, le=744)

    @model_validator(mode="after")
    def _sizes_ordered(self) -> Self:
        if not self.min_nodes <= self.desired_nodes <= self.max_nodes:
            raise ValueError(
                f"node counts must satisfy min_nodes <= desired_nodes <= max_nodes "
                f"(got {self.min_nodes} <= {self.desired_nodes} <= {self.max_nodes})"
            )
        return self


class ClusterSettings(Frozen):
    kubernetes_version: KubernetesVersion = "1.33"
    # Empty: the API endpoint is private (reachable from the VPC only). Never 0.0.0.0/0.
    endpoint_public_access_cidrs: list[IPv4Network] = Field(default_factory=list, max_length=40)
    system_pool: NodePool
    spot_pool: NodePool

    @model_validator(mode="after")
    def _secure_and_cheap(self) -> Self:
        if any(cidr == OPEN_CIDR for cidr in self.endpoint_public_access_cidrs):
            raise ValueError(
                "endpoint_public_access_cidrs must not contain 0.0.0.0/0: list your office/VPN ranges "
                "or leave it empty for a private endpoint"
            )
        if self.system_pool.spot:
            raise ValueError("system_pool.spot must be false: cluster add-ons need on-demand nodes")
        if not self.spot_pool.spot:
            raise ValueError("spot_pool.spot must be true: training and batch run on spot capacity")
        if self.system_pool.min_nodes < 1:
            raise ValueError("system_pool.min_nodes must be at least 1: the cluster needs a node for its add-ons")
        return self


class AwsSettings(Frozen):
    region: AwsRegion
    vpc_cidr: IPv4Network = IPv4Network("10.20.0.0/16")
    availability_zones: int = Field(default=2, ge=2, le=3)
    # One NAT gateway for the VPC (cheap) or one per AZ (survives an AZ outage).
    single_nat_gateway: bool = True
    # The GitHub OIDC provider exists once per AWS account: the first stack in an account creates it,
    # stacks sharing that account set this to false and use it.
    create_github_oidc_provider: bool = True
    cluster: ClusterSettings


def _project_id_allowed(project: str) -> str:
    reserved = [word for word in ("google", "ssl", "null", "undefined") if word in project]
    if reserved:
        raise ValueError(f"GCP reserves {reserved[0]!r}: a project id may not contain it (got {project!r})")
    return project


class GcpSettings(Frozen):
    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"), AfterValidator(_project_id_allowed)]
    region: GcpRegion
    # The billing account the budget watches (`gcloud billing accounts list`).
    billing_account: str = Field(pattern=r"^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$")
    subnet_cidr: IPv4Network = IPv4Network("10.30.0.0/20")
    pods_cidr: IPv4Network = IPv4Network("10.32.0.0/14")
    services_cidr: IPv4Network = IPv4Network("10.36.0.0/20")
    master_cidr: IPv4Network = IPv4Network("172.16.0.0/28")
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    # GKE refuses to delete a protected cluster: set false (and `pulumi up`) only to tear the stack down.
    deletion_protection: bool = True
    cluster: ClusterSettings


class LocalClusterSettings(Frozen):
    """An existing (on-prem or laptop) Kubernetes cluster that the `local` stack deploys the apps to."""

    kubeconfig: str = "~/.kube/config"
    context: str | None = None
    storage_class: str | None = None
    object_store: Literal["minio"] = "minio"


class StorageSettings(Frozen):
    # Old artifact versions move to an archive storage class after this many days.
    archive_after_days: int = Field(default=30, ge=1, le=3650)
    noncurrent_expire_days: int = Field(default=365, ge=1, le=36500)
    abort_incomplete_upload_days: int = Field(default=7, ge=1, le=365)
    # Customer-managed encryption key (AWS KMS / Cloud KMS) instead of the provider-managed default.
    customer_managed_key: bool = True
    # Deleting a stack must not silently delete the model artifacts.
    force_destroy: bool = False
    # Assumption for the cost model: GB of artifacts stored on average.
    expected_gb: float = Field(default=50, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _expiry_after_archive(self) -> Self:
        if self.noncurrent_expire_days <= self.archive_after_days:
            raise ValueError(
                f"noncurrent_expire_days ({self.noncurrent_expire_days}) must be greater than "
                f"archive_after_days ({self.archive_after_days})"
            )
        return self


class BudgetSettings(Frozen):
    monthly_usd: float = Field(gt=0, le=1_000_000)
    alert_emails: list[Email] = Field(min_length=1, max_length=10)
    actual_thresholds_pct: list[int] = Field(default=[50, 80, 100], min_length=1)
    forecast_thresholds_pct: list[int] = Field(default=[100])

    @model_validator(mode="after")
    def _thresholds_valid(self) -> Self:
        for name in ("actual_thresholds_pct", "forecast_thresholds_pct"):
            values = getattr(self, name)
            if any(not 1 <= v <= 1000 for v in values) or values != sorted(set(values)):
                raise ValueError(f"{name} must be distinct percentages 1-1000 in increasing order (got {values})")
        return self


class CostSettings(Frozen):
    """Assumptions of the cost estimate (`mlops cost`) that no resource states. Node counts and hours
    are the node pools' `desired_nodes` and `hours_per_month`; stored GB is `storage.expected_gb`."""

    # Data leaving the private subnets through NAT per cloud (image pulls, package downloads).
    nat_gb_per_month: float = Field(default=50, ge=0, le=1_000_000)
    # Logs ingested per cloud per month (control plane, containers, nodes).
    log_gb_per_month: float = Field(default=10, ge=0, le=1_000_000)
    # Share of the stored artifacts old enough to have moved to the archive storage class.
    archived_share_pct: float = Field(default=50, ge=0, le=100)
    # GB each app image takes in a registry with its kept versions (layers they share are stored once).
    image_gb: float = Field(default=2, ge=0, le=100_000)


class GithubSettings(Frozen):
    """The repository whose workflows may deploy: the cloud trust is bound to it and to the environment."""

    repository: Annotated[str, AfterValidator(github_repository_name)]


class AccessSettings(Frozen):
    """People's access to the clusters: read-only for data scientists, deploy rights for ML engineers."""

    data_scientists: list[Principal] = Field(default_factory=list, max_length=50)
    ml_engineers: list[Principal] = Field(default_factory=list, max_length=50)


class Tags(Frozen):
    """Put on every taggable resource, with `project`, `environment` and `managed-by` added."""

    owner: Label
    cost_center: Label

"""The typed settings of one stack: what `stacks/Pulumi.<env>.yaml` may say.

One pydantic model tree, frozen and closed (`extra="forbid"`): a misspelled key is an error, not
a silently ignored setting. Defaults are the secure and cheap posture. Loading (from the YAML file
or from `pulumi.Config`) lives in `infra.config`; this module is pure data and rules.
"""

from __future__ import annotations

import re
from enum import StrEnum
from ipaddress import IPv4Network
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PositiveInt, model_validator


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Environment(StrEnum):
    LOCAL = "local"
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Cloud(StrEnum):
    AWS = "aws"
    GCP = "gcp"


# Models are promoted through these environments in this order; `local` is outside the chain.
PROMOTION_ORDER: tuple[Environment, ...] = (Environment.DEV, Environment.STAGING, Environment.PROD)

# The regions the template offers (and the cost model prices). copier.yml validates against the same lists.
AWS_REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
GCP_REGIONS = (
    "us-central1",
    "us-east1",
    "us-west1",
    "europe-west1",
    "europe-west4",
    "asia-southeast1",
)
AwsRegion = Literal["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"]
GcpRegion = Literal["us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4", "asia-southeast1"]

Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", max_length=40)]
Label = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Email = Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")]
KubernetesVersion = Annotated[str, Field(pattern=r"^1\.\d{2}$")]
Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")]
# CloudWatch accepts only these retention periods; GCP log buckets accept any, so one list serves both.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)

OPEN_CIDR = IPv4Network("0.0.0.0/0")

IMAGE_REFERENCE = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$"
)
PRINCIPAL = re.compile(
    r"^(arn:aws:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}"
    r"|(user|group):[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})$"
)


def _image_reference(value: str) -> str:
    if value.endswith(":latest"):
        raise ValueError(f"the `latest` tag is not allowed: pin a version tag or a @sha256 digest (got {value!r})")
    if not IMAGE_REFERENCE.match(value):
        raise ValueError(f"must be registry/repository:tag or registry/repository@sha256:<digest> (got {value!r})")
    return value


def _principal(value: str) -> str:
    if not PRINCIPAL.match(value):
        raise ValueError(
            "must be an AWS IAM role/user ARN (arn:aws:iam::<account>:role/<name>) "
            f"or a Google principal (user:<email> or group:<email>) (got {value!r})"
        )
    return value


GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9._-]{1,100}$")


def _repository(value: str) -> str:
    if not GITHUB_REPOSITORY.match(value) or value.endswith(("/.", "/..")):
        raise ValueError(f"must be owner/name of a GitHub repository (got {value!r})")
    return value


# A container image by tag or digest; `latest` (a moving target nobody reviewed) is refused.
ImageRef = Annotated[str, Field(max_length=400), AfterValidator(_image_reference)]
# Who may use the clusters: an IAM ARN (EKS access entry) or a Google `user:`/`group:` (GKE RBAC).
Principal = Annotated[str, AfterValidator(_principal)]


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


class GcpSettings(Frozen):
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
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


class ModelPin(Frozen):
    """The model version this environment serves. Changing it in a pull request is a promotion."""

    name: Slug
    # Required, but may be null: nothing has been promoted to this environment yet.
    version: PositiveInt | None


class ServingSettings(Frozen):
    model: ModelPin
    min_replicas: int = Field(default=1, ge=0, le=100)
    max_replicas: int = Field(default=3, ge=1, le=100)
    cpu: Quantity = "500m"
    memory: Quantity = "1Gi"
    workers: int = Field(default=1, ge=1, le=16)
    # Largest batch one request may carry; larger requests are refused with 413.
    max_batch_rows: int = Field(default=1000, ge=1, le=100_000)

    @model_validator(mode="after")
    def _replicas_ordered(self) -> Self:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})")
        return self


class TrackingSettings(Frozen):
    # `postgres`: a Postgres StatefulSet in the cluster; `external`: a managed database you provide.
    database: Literal["postgres", "external"] = "postgres"
    external_database_host: str | None = None
    database_storage_gb: int = Field(default=20, ge=1, le=10_000)
    auth: bool = True
    cpu: Quantity = "500m"
    memory: Quantity = "1Gi"

    @model_validator(mode="after")
    def _external_needs_host(self) -> Self:
        if (self.database == "external") != (self.external_database_host is not None):
            raise ValueError("external_database_host is required exactly when database is 'external'")
        return self


class MonitoringSettings(Frozen):
    enabled: bool = True
    log_retention_days: int = 30
    p95_latency_ms: int = Field(default=250, ge=1, le=60_000)
    error_rate_pct: float = Field(default=1.0, gt=0, le=100)
    # Input drift: a feature drifts when its KS p-value is below drift_alpha; the sample drifts when
    # the share of drifted features reaches drift_threshold. Checked by the serving app every minute
    # (the alert) and by `mlops drift` on drift_schedule (a CronJob on the spot pool).
    drift_threshold: float = Field(default=0.2, gt=0, le=1)
    drift_alpha: float = Field(default=0.01, gt=0, lt=1)
    drift_window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    drift_sample_rows: int = Field(default=2000, ge=100, le=100_000)
    drift_schedule: str = Field(default="23 * * * *", pattern=r"^\S+( \S+){4}$")

    @model_validator(mode="after")
    def _retention_supported(self) -> Self:
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(
                f"log_retention_days must be one of {', '.join(map(str, LOG_RETENTION_DAYS))} "
                f"(got {self.log_retention_days})"
            )
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

    repository: Annotated[str, AfterValidator(_repository)]


Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
CommitSha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]


class ImagePin(Frozen):
    """One app's image: a `digest` in the stack's own registries (what the images workflow pins), or a
    full `reference` (the local stack, whose cluster has no registry of this stack's making)."""

    digest: Digest | None = None
    reference: ImageRef | None = None
    # The commit the image was built from (`mlops images` compares its build context with the checkout).
    commit: CommitSha | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.digest is None) == (self.reference is None):
            raise ValueError("give exactly one of digest (sha256:<64 hex>, in this stack's registries) or reference")
        return self


class ImageSettings(Frozen):
    """The apps' container images. Required keys that may be null: nothing built yet, so the apps are not
    deployed (the stack still creates the registries the images workflow pushes to)."""

    serving: ImagePin | None
    tracking: ImagePin | None
    # Images each registry repository keeps (ECR lifecycle policy / Artifact Registry cleanup policy).
    keep_last: int = Field(default=30, ge=3, le=1000)

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.serving is None) != (self.tracking is None):
            raise ValueError("pin both serving and tracking, or neither: serving needs the tracking server")
        return self

    @property
    def pinned(self) -> bool:
        return self.serving is not None and self.tracking is not None


class AccessSettings(Frozen):
    """People's access to the clusters: read-only for data scientists, deploy rights for ML engineers."""

    data_scientists: list[Principal] = Field(default_factory=list, max_length=50)
    ml_engineers: list[Principal] = Field(default_factory=list, max_length=50)


class Tags(Frozen):
    """Put on every taggable resource, with `project`, `environment` and `managed-by` added."""

    owner: Label
    cost_center: Label


def _references_only(images: ImageSettings) -> None:
    for app in ("serving", "tracking"):
        pin = getattr(images, app)
        if pin is not None and pin.digest is not None:
            raise ValueError(
                f"images.{app}: a digest names an image in the stack's own registries, and the local "
                "stack has none: give reference: <registry>/<repository>@sha256:<digest> (or :<tag>)"
            )


class Settings(Frozen):
    environment: Environment
    clouds: list[Cloud] = Field(max_length=2)
    tags: Tags
    github: GithubSettings | None = None
    images: ImageSettings
    access: AccessSettings = AccessSettings()
    aws: AwsSettings | None = None
    gcp: GcpSettings | None = None
    local_cluster: LocalClusterSettings | None = None
    storage: StorageSettings = StorageSettings()
    budget: BudgetSettings | None = None
    tracking: TrackingSettings = TrackingSettings()
    serving: ServingSettings
    monitoring: MonitoringSettings = MonitoringSettings()
    cost: CostSettings = CostSettings()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.clouds)) != len(self.clouds):
            raise ValueError(f"clouds must not repeat a cloud (got {[c.value for c in self.clouds]})")
        if self.environment is Environment.LOCAL:
            if self.clouds or self.aws or self.gcp:
                raise ValueError(
                    "the local environment runs on an existing cluster: clouds must be [] and no aws/gcp section"
                )
            if self.local_cluster is None:
                raise ValueError("the local environment needs a local_cluster section (kubeconfig, context)")
            _references_only(self.images)
            return self
        if not self.clouds:
            raise ValueError(f"the {self.environment} environment needs at least one cloud in clouds (aws, gcp)")
        if self.local_cluster is not None:
            raise ValueError("local_cluster is only for the local environment")
        for cloud in Cloud:
            section = getattr(self, cloud.value)
            if cloud in self.clouds and section is None:
                raise ValueError(f"clouds lists {cloud.value} but the {cloud.value} section is missing")
            if cloud not in self.clouds and section is not None:
                raise ValueError(f"a {cloud.value} section is given but clouds does not list {cloud.value}")
        if self.budget is None:
            raise ValueError(f"the {self.environment} environment needs a budget (monthly_usd, alert_emails)")
        if self.github is None:
            raise ValueError(
                f"the {self.environment} environment needs a github section (repository: owner/name): "
                "its deploy identity trusts only that repository's workflows"
            )
        return self

    @property
    def clusters(self) -> dict[Cloud, ClusterSettings]:
        """The managed clusters this stack creates, per cloud."""
        result: dict[Cloud, ClusterSettings] = {}
        if self.aws:
            result[Cloud.AWS] = self.aws.cluster
        if self.gcp:
            result[Cloud.GCP] = self.gcp.cluster
        return result

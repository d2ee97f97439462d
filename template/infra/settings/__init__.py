"""The typed settings of one stack: what `stacks/Pulumi.<env>.yaml` may say.

One pydantic model tree, frozen and closed (`extra="forbid"`): a misspelled key is an error, not
a silently ignored setting. Defaults are the secure and cheap posture. Loading (from the YAML file
or from `pulumi.Config`) lives in `infra.config`; this package is pure data and rules:
`base` (enums, regions, field types), `platform` (clusters, storage, budgets, access), `apps`
(serving, tracking, monitoring, images) and `stack` (the whole file). Import from `infra.settings`.
"""

from infra.settings.apps import ImagePin, ImageSettings, ModelPin, MonitoringSettings, ServingSettings, TrackingSettings
from infra.settings.base import (
    AWS_REGIONS,
    GCP_REGIONS,
    GITHUB_REPOSITORY,
    IMAGE_REFERENCE,
    LOG_RETENTION_DAYS,
    OPEN_CIDR,
    PRINCIPAL,
    PROMOTION_ORDER,
    AwsRegion,
    Cloud,
    CommitSha,
    Digest,
    Email,
    Environment,
    Frozen,
    GcpRegion,
    ImageRef,
    KubernetesVersion,
    Label,
    Principal,
    Quantity,
    Slug,
)
from infra.settings.platform import (
    AccessSettings,
    AwsSettings,
    BudgetSettings,
    ClusterSettings,
    CostSettings,
    GcpSettings,
    GithubSettings,
    LocalClusterSettings,
    NodePool,
    StorageSettings,
    Tags,
)
from infra.settings.stack import Settings

__all__ = [
    "AWS_REGIONS",
    "GCP_REGIONS",
    "GITHUB_REPOSITORY",
    "IMAGE_REFERENCE",
    "LOG_RETENTION_DAYS",
    "OPEN_CIDR",
    "PRINCIPAL",
    "PROMOTION_ORDER",
    "AccessSettings",
    "AwsRegion",
    "AwsSettings",
    "BudgetSettings",
    "Cloud",
    "ClusterSettings",
    "CommitSha",
    "CostSettings",
    "Digest",
    "Email",
    "Environment",
    "Frozen",
    "GcpRegion",
    "GcpSettings",
    "GithubSettings",
    "ImagePin",
    "ImageRef",
    "ImageSettings",
    "KubernetesVersion",
    "Label",
    "LocalClusterSettings",
    "ModelPin",
    "MonitoringSettings",
    "NodePool",
    "Principal",
    "Quantity",
    "ServingSettings",
    "Settings",
    "Slug",
    "StorageSettings",
    "Tags",
    "TrackingSettings",
]

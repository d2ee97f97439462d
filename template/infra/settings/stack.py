"""`Settings`: the whole stack file, and the rules that hold across its sections."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from infra.settings.apps import ImageSettings, MonitoringSettings, ServingSettings, TrackingSettings, references_only
from infra.settings.base import Cloud, Environment, Frozen
from infra.settings.platform import (
    AccessSettings,
    AwsSettings,
    BudgetSettings,
    ClusterSettings,
    CostSettings,
    GcpSettings,
    GithubSettings,
    LocalClusterSettings,
    StorageSettings,
    Tags,
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
    def _canary_needs_prometheus(self) -> Self:
        if self.serving.canary.enabled and not self.monitoring.enabled:
            raise ValueError(
                "serving.canary: its analysis reads Prometheus, which monitoring.enabled: false does not deploy; "
                "enable monitoring or set serving.canary.enabled: false"
            )
        return self

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
            references_only(self.images)
            if self.images.verify_signatures:
                raise ValueError(
                    "images.verify_signatures: the local environment's images are not signed by a workflow "
                    "(it has no github section); set it false"
                )
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

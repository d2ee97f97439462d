"""What an estimate assumes beyond the planned resources (hours, storage, traffic), from the stack file."""

from __future__ import annotations

from pydantic import Field

from infra.pricing.table import FrozenModel
from infra.settings.stack import Settings


class PoolAssumption(FrozenModel):
    nodes: float = Field(ge=0)
    hours: float = Field(gt=0, le=744)


class Assumptions(FrozenModel):
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

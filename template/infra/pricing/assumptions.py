"""What an estimate assumes beyond the planned resources (hours, storage, traffic), from the stack file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cronsim import CronSim
from pydantic import Field

from infra.pricing.table import FrozenModel
from infra.settings.stack import Settings

# The month the schedules are counted over: 730 hours from a Monday, so weekly schedules count alike.
MONTH_START = datetime(2025, 1, 6, tzinfo=UTC)
MONTH_HOURS = 730
# How long the autoscaler keeps an idle spot node after its pod ended (cluster-autoscaler's default
# scale-down-unneeded-time, 10 min): each run holds a node for its own time plus this.
SCALE_DOWN_MINUTES = 10
DRIFT_RUN_MINUTES = 5  # `mlops drift` on a sample: load the reference, query serving, a few KS tests


def runs_per_month(schedule: str) -> int:
    """How many times a CronJob with this schedule starts in a month (730 hours)."""
    end = MONTH_START + timedelta(hours=MONTH_HOURS)
    runs = 0
    for start in CronSim(schedule, MONTH_START):
        if start >= end:
            return runs
        runs += 1
    return runs


class BatchJob(FrozenModel):
    """A CronJob on the spot pool, as the cost model counts it."""

    name: str
    schedule: str
    runs: int = Field(ge=0)
    minutes: float = Field(gt=0)

    @property
    def node_hours(self) -> float:
        return self.runs * (self.minutes + SCALE_DOWN_MINUTES) / 60


def batch_jobs(settings: Settings) -> list[BatchJob]:
    """The scheduled CronJobs a stack runs on its spot pool (when its images are deployed)."""
    jobs = []
    if settings.training.scheduled and settings.images.training is not None:
        training = settings.training
        jobs.append(BatchJob(name="training", schedule=training.schedule, runs=runs_per_month(training.schedule),
                             minutes=training.expected_minutes))  # fmt: skip
    if settings.monitoring.enabled and settings.images.pinned:
        schedule = settings.monitoring.drift_schedule
        jobs.append(BatchJob(name="model-drift", schedule=schedule, runs=runs_per_month(schedule),
                             minutes=DRIFT_RUN_MINUTES))  # fmt: skip
    return jobs


class PoolAssumption(FrozenModel):
    nodes: float = Field(ge=0)
    hours: float = Field(ge=0, le=744)
    # A pool with `hours_per_month: null`: `hours` are its CronJobs' runs (`from_jobs`), one node each.
    scheduled: bool = False
    from_jobs: list[BatchJob] = Field(default_factory=list)


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
        jobs = batch_jobs(settings)
        for cloud, section in (("aws", settings.aws), ("gcp", settings.gcp)):
            if section is None:
                continue
            regions[cloud] = section.region
            pools[cloud] = {}
            for role, pool in (("system", section.cluster.system_pool), ("batch", section.cluster.spot_pool)):
                if pool.hours_per_month is not None:
                    pools[cloud][role] = PoolAssumption(nodes=pool.desired_nodes, hours=pool.hours_per_month)
                elif role == "batch":  # one node per run, for the run and the autoscaler's scale-down delay
                    # Spread over the pool's size (`desired_nodes`: the capacity the all-on-demand baseline
                    # keeps on), so the node-hours are the runs' and the baseline is the pool's.
                    nodes = max(pool.desired_nodes, 1)
                    node_hours = min(sum(job.node_hours for job in jobs), MONTH_HOURS * nodes)
                    pools[cloud][role] = PoolAssumption(
                        nodes=nodes, hours=node_hours / nodes, scheduled=True, from_jobs=jobs
                    )
                else:
                    pools[cloud][role] = PoolAssumption(nodes=pool.desired_nodes, hours=MONTH_HOURS)
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
                if pool.scheduled:
                    runs = ", ".join(f"{j.name} {j.runs} runs x {j.minutes:g} min" for j in pool.from_jobs) or "none"
                    said.append(
                        f"{cloud} {role} pool: {pool.nodes * pool.hours:.0f} node-hours a month "
                        "from its CronJobs' schedules "
                        f"({runs}; +{SCALE_DOWN_MINUTES} min scale-down each)"
                    )
                    continue
                said.append(f"{cloud} {role} pool: {pool.nodes:g} nodes on average, {pool.hours:g} h a month each")
        said += [
            f"{self.stored_gb:g} GB of artifacts per bucket, {self.archived_share_pct:g} % of it old enough to archive",
            f"{self.log_gb_per_month:g} GB of logs and {self.nat_gb_per_month:g} GB through NAT per cloud a month",
            f"{self.image_gb:g} GB of container images kept per app image and cloud",
        ]
        return said

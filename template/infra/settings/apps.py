"""Settings of the apps on each cluster: the served model pin, tracking, monitoring and image pins."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, PositiveInt, model_validator

from infra.settings.base import LOG_RETENTION_DAYS, CommitSha, Digest, Frozen, ImageRef, Quantity, Slug


class ModelPin(Frozen):
    """The model version this environment serves. Changing it in a pull request is a promotion."""

    name: Slug
    # Required, but may be null: nothing has been promoted to this environment yet.
    version: PositiveInt | None


class ShadowPin(Frozen):
    """A candidate version scored beside the served one on a sample of its requests, answering nothing
    (`mlops promote --shadow` sets it; the evidence it gathers gates the promotion of that version)."""

    version: PositiveInt
    sample_pct: float = Field(default=10, gt=0, le=100)


class CanaryStep(Frozen):
    """One step of a rollout: send `weight` % of the pods' traffic to the new pods, then wait."""

    weight: int = Field(ge=1, le=99)
    pause_minutes: int = Field(default=5, ge=0, le=24 * 60)


class CanarySettings(Frozen):
    """How a new version reaches all pods (Argo Rollouts): step by step, each step gated by an analysis
    of the new pods' error ratio and p95 latency in Prometheus (and shadow agreement while a shadow runs).
    Without a service mesh, weights are approximated by pod counts."""

    enabled: bool = True
    steps: list[CanaryStep] = Field(
        default_factory=lambda: [CanaryStep(weight=20, pause_minutes=5), CanaryStep(weight=50, pause_minutes=10)],
        min_length=1,
        max_length=10,
    )
    # Analysis: how often the metrics are queried, and how many failed measurements abort the rollout.
    analysis_interval_seconds: int = Field(default=60, ge=10, le=3600)
    failure_limit: int = Field(default=1, ge=0, le=10)
    min_shadow_agreement: float = Field(default=0.9, ge=0, le=1)

    @model_validator(mode="after")
    def _weights_rise(self) -> Self:
        weights = [step.weight for step in self.steps]
        if weights != sorted(set(weights)):
            raise ValueError(f"steps: weights must rise step by step (got {weights}); the last step to 100 is implied")
        return self


class ServingSettings(Frozen):
    model: ModelPin
    shadow: ShadowPin | None = None
    canary: CanarySettings = Field(default_factory=CanarySettings)
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

    @model_validator(mode="after")
    def _shadow_is_another_version(self) -> Self:
        if self.shadow is None:
            return self
        if self.model.version is None:
            raise ValueError("shadow: nothing is served yet, so there is nothing to compare a shadow with")
        if self.shadow.version == self.model.version:
            raise ValueError(
                f"shadow.version: {self.shadow.version} is the served version; a shadow is another version"
            )
        return self

    @model_validator(mode="after")
    def _workers_fit_the_cpu(self) -> Self:
        # A worker is one event loop on one core; the container may use twice its CPU request (see
        # infra/k8s/objects.py). More workers than those cores only split the same quota (measured:
        # no gain, a worse tail), so add replicas, or CPU with the workers.
        if self.cpu.endswith(("Ki", "Mi", "Gi", "Ti")):
            raise ValueError(f"cpu: {self.cpu!r} is a memory quantity; give cores (e.g. '1') or millicores ('500m')")
        cores = 2 * (float(self.cpu[:-1]) / 1000 if self.cpu.endswith("m") else float(self.cpu))
        if self.workers > max(1, int(cores)):
            raise ValueError(
                f"workers ({self.workers}) exceeds the {cores:g} cores the container may use (twice cpu "
                f"{self.cpu!r}); raise cpu to at least {self.workers / 2:g} or lower workers"
            )
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
    # The cluster admits only app images signed by the github.repository's images workflow on main
    # (sigstore policy-controller, infra/k8s/admission.py). The local stack's images are unsigned: false.
    verify_signatures: bool = True

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.serving is None) != (self.tracking is None):
            raise ValueError("pin both serving and tracking, or neither: serving needs the tracking server")
        return self

    @property
    def pinned(self) -> bool:
        return self.serving is not None and self.tracking is not None


def references_only(images: ImageSettings) -> None:
    for app in ("serving", "tracking"):
        pin = getattr(images, app)
        if pin is not None and pin.digest is not None:
            raise ValueError(
                f"images.{app}: a digest names an image in the stack's own registries, and the local "
                "stack has none: give reference: <registry>/<repository>@sha256:<digest> (or :<tag>)"
            )

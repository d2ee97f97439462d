"""Model promotion policies: what a model version must show before an environment may serve it.

One YAML file per environment (`policies/models/<env>.yaml`), validated by `ModelPolicy`; one
function, `evaluate`, returns a structured verdict (every rule: passed or failed, and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.settings import PROMOTION_ORDER, Environment

POLICY_DIR = Path(__file__).resolve().parent
KNOWN_METRICS = ("accuracy", "roc_auc", "f1")


class ShadowPolicy(BaseModel):
    """What a candidate must have shown as the environment's shadow (`serving.shadow`) before it may serve
    there: read from the environment's Prometheus (locally: serving's /metrics) by `mlops gate`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_requests: int = Field(ge=1, le=100_000_000)  # requests the candidate scored beside the champion
    min_agreement: float = Field(ge=0, le=1)  # share of rows whose predicted class agreed with the champion's
    max_p95_ms: float = Field(gt=0, le=60_000)  # the candidate's p95 time per request
    window_hours: int = Field(default=24, ge=1, le=24 * 30)  # how far back the evidence is read


class ModelPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    environment: Environment
    description: str = Field(min_length=1)
    # Metric floors on held-out data, e.g. {roc_auc: 0.97}.
    min_metrics: dict[str, float] = Field(default_factory=dict)
    # Largest allowed difference of a metric between fairness groups, e.g. {roc_auc: 0.05}.
    max_group_gap: dict[str, float] = Field(default_factory=dict)
    required_tags: list[str] = Field(default_factory=list)
    require_signature: bool = True
    # Evidence from shadow traffic (required in prod: the question its reviewer has is how the candidate
    # behaves on today's real requests).
    shadow: ShadowPolicy | None = None

    @model_validator(mode="after")
    def _known_and_bounded(self) -> ModelPolicy:
        for section in ("min_metrics", "max_group_gap"):
            for metric, bound in getattr(self, section).items():
                if metric not in KNOWN_METRICS:
                    raise ValueError(f"{section}.{metric}: unknown metric; known: {', '.join(KNOWN_METRICS)}")
                if not 0 <= bound <= 1:
                    raise ValueError(f"{section}.{metric}: {bound} must be between 0 and 1")
        if self.environment is Environment.LOCAL:
            raise ValueError("environment: local is outside the promotion chain (dev → staging → prod)")
        if self.environment is Environment.PROD and self.shadow is None:
            raise ValueError(
                "shadow: prod requires shadow evidence (min_requests, min_agreement, max_p95_ms): a candidate "
                "must have scored prod's own traffic beside the served version first"
            )
        return self

    def without_shadow(self) -> ModelPolicy:
        """The rules a version must pass to become the environment's shadow (it has no evidence yet)."""
        return self.model_copy(update={"shadow": None})

    @property
    def source(self) -> Environment | None:
        """The environment a version must be serving in before it may come here (None: from training)."""
        index = PROMOTION_ORDER.index(self.environment)
        return PROMOTION_ORDER[index - 1] if index else None


class PolicyError(ValueError):
    pass


def load_policy(environment: str, directory: Path = POLICY_DIR) -> ModelPolicy:
    path = directory / f"{environment}.yaml"
    if not path.is_file():
        raise PolicyError(f"{path}: no promotion policy for environment {environment!r}")
    try:
        policy = ModelPolicy.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors())
        raise PolicyError(f"{path}: {problems}") from None
    if policy.environment.value != environment:
        raise PolicyError(f"{path}: environment is {policy.environment.value!r}, expected {environment!r}")
    return policy


@dataclass(frozen=True)
class RuleResult:
    rule: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    environment: str
    model: str
    model_version: int
    rules: list[RuleResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(rule.passed for rule in self.rules)

    @property
    def failures(self) -> list[RuleResult]:
        return [rule for rule in self.rules if not rule.passed]

    def as_dict(self) -> dict[str, object]:
        return {
            "environment": self.environment,
            "model": self.model,
            "model_version": self.model_version,
            "passed": self.passed,
            "rules": [rule.__dict__ for rule in self.rules],
        }


@dataclass(frozen=True)
class ShadowEvidence:
    """What the candidate did as shadow beside the served version (`apps/serving/shadow.py`'s series)."""

    champion_version: int
    candidate_version: int
    requests: float  # scored
    rows: float
    agreement: float | None  # None: no rows scored
    p95_ms: float | None
    dropped: float
    failed: float
    source: str  # where it was read: a Prometheus URL or a /metrics URL

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Evidence:
    """What the registry says about a candidate version (gathered by the caller)."""

    model: str
    model_version: int
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    has_signature: bool
    # The source environment's serving version (None when the source is training).
    source_serving_version: int | None = None
    # What the target environment serves now, and the candidate's shadow evidence there.
    served_version: int | None = None
    shadow: ShadowEvidence | None = None


def evaluate(policy: ModelPolicy, evidence: Evidence) -> Verdict:
    rules: list[RuleResult] = []
    source = policy.source
    if source is not None:
        serving = evidence.source_serving_version
        rules.append(
            RuleResult(
                "order",
                serving == evidence.model_version,
                f"{source.value} serves version {serving}"
                if serving is not None
                else f"{source.value} serves no version yet",
            )
        )
    for metric, floor in sorted(policy.min_metrics.items()):
        value = evidence.metrics.get(metric)
        rules.append(
            RuleResult(
                f"min_{metric}",
                value is not None and value >= floor,
                f"{metric} = {value:.4f}, floor {floor}" if value is not None else f"{metric} was not logged",
            )
        )
    for metric, bound in sorted(policy.max_group_gap.items()):
        gap = evidence.metrics.get(f"{metric}_group_gap")
        rules.append(
            RuleResult(
                f"group_gap_{metric}",
                gap is not None and gap <= bound,
                f"{metric} gap between groups = {gap:.4f}, at most {bound}"
                if gap is not None
                else f"{metric}_group_gap was not logged",
            )
        )
    if policy.shadow is not None:
        rules += _shadow_rules(policy.shadow, policy.environment.value, evidence)
    missing = [tag for tag in policy.required_tags if not evidence.tags.get(tag)]
    rules.append(
        RuleResult(
            "lineage_tags",
            not missing,
            f"missing: {', '.join(missing)}" if missing else f"present: {', '.join(policy.required_tags)}",
        )
    )
    if policy.require_signature:
        rules.append(
            RuleResult(
                "signature",
                evidence.has_signature,
                "signature logged" if evidence.has_signature else "the model has no signature",
            )
        )
    return Verdict(policy.environment.value, evidence.model, evidence.model_version, rules)


def _shadow_rules(policy: ShadowPolicy, environment: str, evidence: Evidence) -> list[RuleResult]:
    if evidence.served_version is None:
        return [RuleResult("shadow_evidence", True, f"{environment} serves nothing yet: no version to compare with")]
    seen = evidence.shadow
    if seen is None or seen.requests == 0:
        where = f" ({seen.source})" if seen is not None else ""
        return [
            RuleResult(
                "shadow_evidence",
                False,
                f"version {evidence.model_version} has not scored {environment}'s traffic beside version "
                f"{evidence.served_version}{where}: promote it with --shadow first and let it see traffic",
            )
        ]
    lost = f"; {seen.dropped:g} dropped, {seen.failed:g} failed" if seen.dropped or seen.failed else ""
    agreement = f"{seen.agreement:.4f}" if seen.agreement is not None else "unknown"
    p95 = f"{seen.p95_ms:.2f} ms" if seen.p95_ms is not None else "unknown"
    return [
        RuleResult(
            "shadow_requests",
            seen.requests >= policy.min_requests,
            f"{seen.requests:g} requests scored beside v{seen.champion_version}, at least {policy.min_requests}{lost}",
        ),
        RuleResult(
            "shadow_agreement",
            seen.agreement is not None and seen.agreement >= policy.min_agreement,
            f"agreement with v{seen.champion_version} = {agreement} over {seen.rows:g} rows, "
            f"at least {policy.min_agreement}",
        ),
        RuleResult(
            "shadow_p95_ms",
            seen.p95_ms is not None and seen.p95_ms <= policy.max_p95_ms,
            f"the candidate's p95 = {p95}, at most {policy.max_p95_ms:g} ms",
        ),
    ]

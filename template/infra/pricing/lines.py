"""What an estimate is made of: priced lines, unpriced resources, and the estimate of one stack."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from infra.pricing.assumptions import Assumptions

SPOT = "spot"


SCALE_TO_ZERO = "scale-to-zero"


LIFECYCLE = "lifecycle"


SAVING_KINDS = (SPOT, SCALE_TO_ZERO, LIFECYCLE)


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


class NotPriced(Exception):
    """Raised by a pricing rule that cannot price a resource; the message is the reason."""


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

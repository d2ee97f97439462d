"""The monthly cost of a stack, from its planned resources, the stack's assumptions and a price table.

Pure arithmetic over plain data: a resource (type, name, properties as the engine sends them) is
priced by the rule for its type, with list prices from `prices.yaml` (each figure with its
source and date) and the assumptions no resource states (node hours, stored GB, log volume) from the
stack settings. A resource nobody knows how to price is reported as *unpriced*, never as zero.

Each line also carries the *baseline*: the same capacity bought the expensive way (on-demand, always
on, every byte in the standard storage class), so the savings of spot pools, scale-to-zero and
lifecycle rules are visible per line. `mlops cost`, the budget policy of the CrossGuard pack and
`mlops gate` all call `estimate()`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from infra.pricing.assumptions import Assumptions
from infra.pricing.lines import Estimate, Line, NotPriced, PricedResource, Unpriced
from infra.pricing.rules import PRICING, Pricing
from infra.pricing.table import OFFERED_REGIONS, PriceTable, shipped_prices


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
                    Unpriced(
                        resource.name, resource.type, "no pricing rule for this resource type (infra/pricing/rules.py)"
                    )
                )
            continue
        context = Pricing(table, assumptions, resources, cloud, assumptions.regions[cloud])
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

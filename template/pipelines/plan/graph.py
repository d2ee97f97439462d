"""The result of an offline plan: the planned resources of one stack with their inputs and outputs."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


class PlanError(RuntimeError):
    """The program failed under the mocks: the message names the stack and the failing step."""


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    provider: str | None = None
    dependencies: list[str] = field(default_factory=list)


@dataclass
class Plan:
    project: str
    stack: str
    environment: str
    clouds: list[str]
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    seconds: float
    # What the cost estimate assumes beyond the resources (pipelines.cost.Assumptions as JSON).
    assumptions: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.type for r in self.resources if r.custom).items()))

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "environment": self.environment,
            "clouds": self.clouds,
            "resource_count": sum(1 for r in self.resources if r.custom),
            "counts": self.counts(),
            "resources": [asdict(r) for r in self.resources],
            "outputs": self.outputs,
            "assumptions": self.assumptions,
        }

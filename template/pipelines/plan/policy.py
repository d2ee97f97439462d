"""The offline policy check: the CrossGuard rules evaluated on `mlops plan`'s resource graph.

Properties are handed to the rules the way the engine hands them to the pack process: the plan's
inputs are the wire form the engine received (camelCase, numbers as floats), and they go through
`pulumi_policy`'s own `deserialize_properties` and read-only proxies. Enforcement and rule config
come from `policies/infra/config/<env>.json`, with the engine's precedence. `tests/infra/
test_policy_fidelity.py` drives the real pack process over gRPC and checks that it agrees.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import unknown_checking_proxy

from pipelines.plan.graph import Plan
from policies.infra.pack import RULES, enforcement, environment_config, rule_config
from policies.infra.rules import Context, Enforcement, Resource


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: str
    severity: str
    message: str
    urn: str | None
    resource_type: str | None
    resource_name: str | None


@dataclass
class PolicyReport:
    stack: str
    environment: str
    rules: int
    resources: int
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == Enforcement.MANDATORY]

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "environment": self.environment,
            "rules": self.rules,
            "resources": self.resources,
            "mandatory": len(self.mandatory),
            "advisory": len(self.violations) - len(self.mandatory),
            "violations": [asdict(v) for v in self.violations],
        }


def engine_props(inputs: dict[str, Any]) -> Any:
    """What `Analyze` hands a policy: deserialized properties behind the SDK's read-only proxies."""
    return unknown_checking_proxy(deserialize_properties(inputs))


def engine_resources(plan: Plan) -> list[Resource]:
    """Every planned resource as a stack policy receives it (components included)."""
    return [
        Resource(r.type, r.name, r.urn, engine_props(r.inputs), tuple(r.dependencies), r.parent) for r in plan.resources
    ]


def check_plan(plan: Plan, config: dict[str, Any] | None = None) -> PolicyReport:
    started = time.perf_counter()
    config = environment_config(plan.environment) if config is None else config
    resources = engine_resources(plan)
    custom = [res for res, planned in zip(resources, plan.resources, strict=True) if planned.custom]
    by_urn = {r.urn: r for r in resources}
    report = PolicyReport(plan.stack, plan.environment, rules=len(RULES), resources=len(custom))
    for rule in RULES:
        level = enforcement(rule, config)
        if level is Enforcement.DISABLED:
            continue
        context = Context(config=rule_config(rule, config), assumptions=plan.assumptions or None)
        found: list[tuple[Resource | None, str]] = []
        if rule.stack_check is not None:
            found = [
                (by_urn.get(urn) if urn else None, message) for urn, message in rule.stack_check(resources, context)
            ]
        elif rule.check is not None:
            for resource in custom:
                if rule.applies_to(resource.type):
                    found += [(resource, message) for message in rule.check(resource.props, context)]
        report.violations += [
            Violation(
                policy=rule.name,
                enforcement=level.value,
                severity=rule.severity.value,
                message=message,
                urn=resource.urn if resource else None,
                resource_type=resource.type if resource else None,
                resource_name=resource.name if resource else None,
            )
            for resource, message in found
        ]
    report.seconds = round(time.perf_counter() - started, 3)
    return report

"""The rules as CrossGuard policies, and the per-environment enforcement/config both routes share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import Severity as PulumiSeverity

from policies.infra.rules import Context, Enforcement, Resource, Rule, aws, gcp, governance, images, kubernetes

PACK_NAME = "mlops-infra"
CONFIG_DIR = Path(__file__).resolve().parent / "config"
RULES: list[Rule] = [*aws.RULES, *gcp.RULES, *kubernetes.RULES, *images.RULES, *governance.RULES]
BY_NAME = {rule.name: rule for rule in RULES}


def environment_config(environment: str) -> dict[str, Any]:
    """`policies/infra/config/<env>.json`: the file the workflows pass as `--policy-pack-config`."""
    path = CONFIG_DIR / f"{environment}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no policy config for {environment}: expected {path}")
    config = json.loads(path.read_text())
    unknown = sorted(set(config) - set(BY_NAME) - {"all"})
    if unknown:
        raise ValueError(f"{path.name}: unknown policies {', '.join(unknown)}")
    return dict(config)


def enforcement(rule: Rule, config: Mapping[str, Any]) -> Enforcement:
    """The engine's precedence: the rule's own entry, then `all`, then the rule's default."""
    entry = config.get(rule.name)
    if isinstance(entry, str):
        return Enforcement(entry)
    if isinstance(entry, Mapping) and "enforcementLevel" in entry:
        return Enforcement(entry["enforcementLevel"])
    if "all" in config:
        return Enforcement(config["all"])
    return rule.enforcement


def rule_config(rule: Rule, config: Mapping[str, Any]) -> dict[str, Any]:
    entry = config.get(rule.name)
    overrides = {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, Mapping) else {}
    return {**rule.config_defaults, **overrides}


def _schema(rule: Rule) -> PolicyConfigSchema | None:
    if not rule.config_defaults:
        return None
    kinds = {bool: "boolean", int: "number", float: "number", list: "array", str: "string"}
    properties: dict[str, dict[str, Any]] = {}
    for key, default in rule.config_defaults.items():
        kind = kinds.get(type(default))
        properties[key] = {"type": kind} if kind else {}
    return PolicyConfigSchema(properties=properties)


def _resource(item: Any) -> Resource:
    return Resource(
        type=item.resource_type,
        name=item.name,
        urn=item.urn,
        props=item.props,
        dependencies=tuple(d.urn for d in item.dependencies),
        parent=item.parent.urn if item.parent is not None else None,
    )


def to_policy(rule: Rule) -> ResourceValidationPolicy | StackValidationPolicy:
    level = {Enforcement.ADVISORY: EnforcementLevel.ADVISORY, Enforcement.MANDATORY: EnforcementLevel.MANDATORY}.get(
        rule.enforcement, EnforcementLevel.DISABLED
    )
    severity = PulumiSeverity(rule.severity.value)
    description = rule.description
    schema = _schema(rule)

    def context(args: ResourceValidationArgs | StackValidationArgs) -> Context:
        return Context(config={**rule.config_defaults, **dict(args.get_config())})

    if rule.stack_check is not None:
        stack_check = rule.stack_check

        def validate_stack(args: StackValidationArgs, report: ReportViolation) -> None:
            resources = [_resource(r) for r in args.resources]
            for urn, message in stack_check(resources, context(args)):
                report(message, urn)

        return StackValidationPolicy(
            rule.name,
            description,
            validate_stack,
            level,
            config_schema=schema,
            severity=severity,
            remediation_steps=rule.remediation,
        )
    check = rule.check
    assert check is not None

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if not rule.applies_to(args.resource_type):
            return
        for message in check(args.props, context(args)):
            report(message, None)

    return ResourceValidationPolicy(
        rule.name,
        description,
        validate,
        level,
        config_schema=schema,
        severity=severity,
        remediation_steps=rule.remediation,
    )

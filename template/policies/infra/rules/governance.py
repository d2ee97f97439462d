"""Cost and governance rules: required tags/labels, a budget in every cloud stack, the budget's ceiling,
and the stack's estimated monthly cost within its budget."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from infra.config import load_stack
from infra.pricing.assumptions import Assumptions
from infra.pricing.estimate import estimate
from policies.infra.rules import Context, Enforcement, Props, Resource, Rule, Severity, as_list, dig

# The repository the pack belongs to: the pack process reads the stack's settings from its stacks/.
REPOSITORY = Path(__file__).resolve().parents[3]

REQUIRED_TAGS = ("project", "environment", "owner", "cost-center", "managed-by")
# Where each taggable type this template creates keeps its tags (AWS tags, GCP labels); Kubernetes
# objects keep them in metadata.labels. tests/policies/test_infra_policies.py checks this list against the SDKs.
TAG_FIELDS: dict[str, str] = {
    "aws:budgets/budget:Budget": "tags",
    "aws:cloudwatch/logGroup:LogGroup": "tags",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "tags",
    "aws:ec2/eip:Eip": "tags",
    "aws:ec2/internetGateway:InternetGateway": "tags",
    "aws:ec2/natGateway:NatGateway": "tags",
    "aws:ec2/routeTable:RouteTable": "tags",
    "aws:ec2/subnet:Subnet": "tags",
    "aws:ec2/vpc:Vpc": "tags",
    "aws:eks/accessEntry:AccessEntry": "tags",
    "aws:eks/addon:Addon": "tags",
    "aws:eks/cluster:Cluster": "tags",
    "aws:eks/nodeGroup:NodeGroup": "tags",
    "aws:iam/openIdConnectProvider:OpenIdConnectProvider": "tags",
    "aws:iam/role:Role": "tags",
    "aws:kms/key:Key": "tags",
    "aws:s3/bucket:Bucket": "tags",
    "aws:sns/topic:Topic": "tags",
    "gcp:container/cluster:Cluster": "resourceLabels",
    "gcp:kms/cryptoKey:CryptoKey": "labels",
    "gcp:monitoring/alertPolicy:AlertPolicy": "userLabels",
    "gcp:monitoring/notificationChannel:NotificationChannel": "userLabels",
    "gcp:storage/bucket:Bucket": "labels",
}
BUDGETS = ("aws:budgets/budget:Budget", "gcp:billing/budget:Budget")


def tag_field(resource_type: str) -> str | None:
    if resource_type in TAG_FIELDS:
        return TAG_FIELDS[resource_type]
    return (
        "metadata.labels"
        if resource_type.startswith("kubernetes:") and not resource_type.startswith("kubernetes:helm")
        else None
    )


def _tags(props: Props, resource_type: str) -> dict[str, object] | None:
    field = tag_field(resource_type)
    if field is None:
        return None
    return dig(props, *field.split(".")) or {}


def _required_tags(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    required = tuple(ctx.config.get("required", REQUIRED_TAGS))
    for resource in resources:
        tags = _tags(resource.props, resource.type)
        if tags is None:
            continue
        missing = [key for key in required if key not in tags]
        if missing:
            yield resource.urn, f"{resource.name} lacks the tags {', '.join(missing)}"


def _budget_amount(props: Props) -> float | None:
    amount = props.get("limitAmount") or dig(props, "amount", "specifiedAmount", "units")
    try:
        return float(amount) if amount is not None else None
    except (TypeError, ValueError):
        return None


def _budget_exists(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    if not any(r.type.startswith(("aws:", "gcp:")) for r in resources):
        return  # a stack on an existing cluster spends nothing on a cloud bill
    budgets = [r for r in resources if r.type in BUDGETS]
    if not budgets:
        yield None, "the stack creates cloud resources but no budget"
    for budget in budgets:
        thresholds = as_list(budget.props.get("notifications")) or as_list(budget.props.get("thresholdRules"))
        if not thresholds:
            yield budget.urn, f"budget {budget.name} has no alert thresholds"


def _budget_ceiling(props: Props, ctx: Context) -> Iterable[str]:
    ceiling = ctx.config.get("max_monthly_usd")
    amount = _budget_amount(props)
    if ceiling is not None and amount is not None and amount > float(ceiling):
        yield f"budget of {amount:,.0f} USD/month exceeds this environment's ceiling of {float(ceiling):,.0f}"


def _environment(resources: list[Resource]) -> str | None:
    for resource in resources:
        tags = _tags(resource.props, resource.type)
        if tags and isinstance(tags.get("environment"), str):
            return str(tags["environment"])
    return None


def _assumptions(resources: list[Resource], ctx: Context) -> Assumptions:
    """The offline check hands the plan's assumptions over; the pack process (which the engine gives
    resources, not stack config) reads `stacks/Pulumi.<stack>.yaml`, the stack named by the rule's
    `stack` config or else by the resources' `environment` tag."""
    if ctx.assumptions:
        return Assumptions.model_validate(ctx.assumptions)
    stack = ctx.config.get("stack") or _environment(resources)
    if not stack:
        raise ValueError("no resource carries an `environment` tag: name the stack in this rule's `stack` config")
    return Assumptions.from_settings(load_stack(REPOSITORY, str(stack)))


def _within_budget(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    if not any(r.type.startswith(("aws:", "gcp:")) for r in resources):
        return  # a stack on an existing cluster adds nothing to a cloud bill
    try:
        assumptions = _assumptions(resources, ctx)
    except ValueError as exc:  # SettingsError, pydantic's ValidationError, PriceTableError, no stack named
        yield None, f"the cost estimate needs the stack's settings, which could not be read: {exc}"
        return
    budget = assumptions.budget_usd
    if budget is None:
        return  # no budget at all is governance-budget-stack-enable-budget's finding
    result = estimate(assumptions.environment, resources, assumptions)
    share = float(ctx.config.get("max_budget_pct", 100))
    if result.monthly_usd > budget * share / 100:
        largest = sorted(result.lines, key=lambda line: -line.monthly_usd)[:3]
        items = ", ".join(f"{line.key} {line.monthly_usd:,.0f}" for line in largest)
        unpriced = f"; {len(result.unpriced)} resources unpriced on top" if result.unpriced else ""
        yield (
            None,
            f"estimated {result.monthly_usd:,.2f} USD/month is over {share:g} % of the budget of "
            f"{budget:,.0f} USD/month (largest: {items}{unpriced}); see `mlops cost --env {assumptions.environment}`",
        )


RULES = [
    Rule(
        "governance-tags-resource-configure-required-tags",
        "Tags are how a bill is split by project, environment, owner and cost center.",
        Severity.MEDIUM,
        "Pass the stack's tag set (infra.naming.tags) to every taggable resource.",
        stack_check=_required_tags,
        config_defaults={"required": list(REQUIRED_TAGS)},
    ),
    Rule(
        "governance-budget-stack-enable-budget",
        "Every stack that spends money needs a budget with alerts, so a surprise bill is a message, not a shock.",
        Severity.HIGH,
        "Keep the `budget:` section in the stack file (monthly_usd, alert_emails, thresholds).",
        stack_check=_budget_exists,
    ),
    Rule(
        "governance-budget-limit-configure-ceiling",
        "A budget raised past what the environment is allowed to spend hides an overspend instead of flagging it.",
        Severity.MEDIUM,
        "Lower budget.monthly_usd, or raise max_monthly_usd in policies/infra/config/<env>.json by pull request.",
        BUDGETS,
        check=_budget_ceiling,
        config_defaults={"max_monthly_usd": None},
    ),
    Rule(
        "governance-cost-stack-disallow-over-budget",
        "A change whose estimated monthly cost is over the stack's budget is an overspend decided in review, "
        "not discovered on the bill.",
        Severity.HIGH,
        "Lower node counts, hours or machine types in the stack file (see `mlops cost`), or raise budget.monthly_usd "
        "within the environment's ceiling.",
        stack_check=_within_budget,
        enforcement=Enforcement.ADVISORY,
        config_defaults={"max_budget_pct": 100, "stack": ""},
    ),
]

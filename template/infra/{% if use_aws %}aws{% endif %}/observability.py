"""`Budget` (monthly cost limit with e-mail alerts) and `Monitoring` (log groups, alarm topic, cluster alarms)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.settings import BudgetSettings


def budget_notifications(budget: BudgetSettings) -> list[dict[str, object]]:
    """One notification per threshold: ACTUAL spend at each `actual_thresholds_pct`, FORECASTED at the others."""
    notes: list[dict[str, object]] = []
    for kind, thresholds in (("ACTUAL", budget.actual_thresholds_pct), ("FORECASTED", budget.forecast_thresholds_pct)):
        notes.extend(
            {
                "comparison_operator": "GREATER_THAN",
                "notification_type": kind,
                "threshold": float(pct),
                "threshold_type": "PERCENTAGE",
                "subscriber_email_addresses": list(budget.alert_emails),
            }
            for pct in thresholds
        )
    return notes


@dataclass(frozen=True)
class BudgetArgs:
    budget_name: str
    environment: str
    settings: BudgetSettings
    tags: dict[str, str]


class Budget(pulumi.ComponentResource):
    budget_name: pulumi.Output[str]

    def __init__(self, name: str, args: BudgetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:Budget", name, None, opts)
        budget = aws.budgets.Budget(
            f"{name}-monthly",
            name=args.budget_name,
            budget_type="COST",
            time_unit="MONTHLY",
            limit_amount=f"{args.settings.monthly_usd:.2f}",
            limit_unit="USD",
            # Counts what carries this environment's tag (activate `environment` as a cost allocation tag).
            cost_filters=[
                aws.budgets.BudgetCostFilterArgs(name="TagKeyValue", values=[f"user:environment${args.environment}"])
            ],
            notifications=[aws.budgets.BudgetNotificationArgs(**n) for n in budget_notifications(args.settings)],  # type: ignore[arg-type]
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.budget_name = budget.name
        self.register_outputs({"budget_name": self.budget_name})


@dataclass(frozen=True)
class MonitoringArgs:
    cluster_name: pulumi.Input[str]
    cluster_name_prefix: str
    # The cluster's key: the Container Insights groups are encrypted like the control-plane group.
    key_arn: pulumi.Input[str]
    alert_emails: list[str]
    log_retention_days: int
    tags: dict[str, str]


# Container Insights metrics (the amazon-cloudwatch-observability add-on publishes them).
CLUSTER_ALARMS = {
    "failed-nodes": ("cluster_failed_node_count", "GreaterThanThreshold", 0.0, "a node is not ready"),
    "node-cpu": ("node_cpu_utilization", "GreaterThanThreshold", 85.0, "nodes are CPU-saturated"),
    "node-memory": ("node_memory_utilization", "GreaterThanThreshold", 90.0, "nodes are short of memory"),
}


class Monitoring(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        topic = aws.sns.Topic(
            f"{name}-alerts",
            name=f"{args.cluster_name_prefix}-alerts",
            kms_master_key_id="alias/aws/sns",
            tags=args.tags,
            opts=child,
        )
        for index, email in enumerate(args.alert_emails):
            aws.sns.TopicSubscription(
                f"{name}-alerts-{index}",
                topic=topic.arn,
                protocol="email",
                endpoint=email,
                opts=pulumi.ResourceOptions(parent=topic),
            )
        # Container Insights writes here; creating the groups first sets their retention (the agent would not).
        for stream in ("application", "dataplane", "host", "performance"):
            aws.cloudwatch.LogGroup(
                f"{name}-{stream}",
                name=pulumi.Output.concat("/aws/containerinsights/", args.cluster_name, f"/{stream}"),
                retention_in_days=args.log_retention_days,
                kms_key_id=args.key_arn,
                tags=args.tags,
                opts=child,
            )
        aws.eks.Addon(
            f"{name}-insights",
            cluster_name=args.cluster_name,
            addon_name="amazon-cloudwatch-observability",
            resolve_conflicts_on_create="OVERWRITE",
            tags=args.tags,
            opts=child,
        )
        for alarm, (metric, comparison, threshold, why) in CLUSTER_ALARMS.items():
            aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm}",
                name=f"{args.cluster_name_prefix}-{alarm}",
                alarm_description=f"{args.cluster_name_prefix}: {why}",
                namespace="ContainerInsights",
                metric_name=metric,
                dimensions={"ClusterName": args.cluster_name},
                statistic="Maximum",
                period=300,
                evaluation_periods=2,
                comparison_operator=comparison,
                threshold=threshold,
                treat_missing_data="breaching" if alarm == "failed-nodes" else "notBreaching",
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                tags=args.tags,
                opts=child,
            )
        self.topic_arn = topic.arn
        self.register_outputs({"topic_arn": self.topic_arn})

"""`Budget` (billing budget on the project, e-mail alerts) and `Monitoring` (log retention, alert policies)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.naming import gcp_name
from infra.settings import BudgetSettings


def threshold_rules(budget: BudgetSettings) -> list[dict[str, object]]:
    """Budget thresholds as fractions: CURRENT_SPEND at the actual percentages, FORECASTED_SPEND at the others."""
    rules = [{"threshold_percent": pct / 100, "spend_basis": "CURRENT_SPEND"} for pct in budget.actual_thresholds_pct]
    rules += [
        {"threshold_percent": pct / 100, "spend_basis": "FORECASTED_SPEND"} for pct in budget.forecast_thresholds_pct
    ]
    return rules


def email_channels(
    name: str, project: str, emails: list[str], labels: dict[str, str], parent: pulumi.Resource
) -> list[pulumi.Output[str]]:
    return [
        gcp.monitoring.NotificationChannel(
            f"{name}-email-{index}",
            project=project,
            type="email",
            display_name=f"alerts to {email}",
            labels={"email_address": email},
            user_labels=labels,
            opts=pulumi.ResourceOptions(parent=parent),
        ).id
        for index, email in enumerate(emails)
    ]


@dataclass(frozen=True)
class BudgetArgs:
    project: str
    project_number: pulumi.Input[str]
    billing_account: str
    display_name: str
    environment: str
    settings: BudgetSettings
    labels: dict[str, str]


class Budget(pulumi.ComponentResource):
    budget_name: pulumi.Output[str]

    def __init__(self, name: str, args: BudgetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:Budget", name, None, opts)
        channels = email_channels(name, args.project, list(args.settings.alert_emails), args.labels, self)
        budget = gcp.billing.Budget(
            f"{name}-monthly",
            billing_account=args.billing_account,
            display_name=args.display_name,
            amount=gcp.billing.BudgetAmountArgs(
                specified_amount=gcp.billing.BudgetAmountSpecifiedAmountArgs(
                    currency_code="USD", units=str(round(args.settings.monthly_usd))
                )
            ),
            budget_filter=gcp.billing.BudgetBudgetFilterArgs(
                projects=[pulumi.Output.concat("projects/", args.project_number)],
                labels={"environment": args.environment},
            ),
            threshold_rules=[gcp.billing.BudgetThresholdRuleArgs(**rule) for rule in threshold_rules(args.settings)],  # type: ignore[arg-type]
            all_updates_rule=gcp.billing.BudgetAllUpdatesRuleArgs(
                monitoring_notification_channels=channels, disable_default_iam_recipients=False
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.budget_name = budget.name
        self.register_outputs({"budget_name": self.budget_name})


@dataclass(frozen=True)
class MonitoringArgs:
    project: str
    region: str
    name_prefix: str
    cluster_name: str
    alert_emails: list[str]
    log_retention_days: int
    labels: dict[str, str]


# Cloud Monitoring metrics GKE publishes for every cluster (system metrics are on by default).
CLUSTER_ALERTS = {
    "node-cpu": (
        'metric.type="kubernetes.io/node/cpu/allocatable_utilization" AND resource.type="k8s_node"',
        0.85,
        "nodes are CPU-saturated",
    ),
    "node-memory": (
        'metric.type="kubernetes.io/node/memory/allocatable_utilization" AND resource.type="k8s_node"',
        0.9,
        "nodes are short of memory",
    ),
    "container-restarts": (
        'metric.type="kubernetes.io/container/restart_count" AND resource.type="k8s_container"',
        3.0,
        "containers are crash-looping",
    ),
}


class Monitoring(pulumi.ComponentResource):
    log_bucket: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = gcp.logging.ProjectBucketConfig(
            f"{name}-logs",
            project=args.project,
            location=args.region,
            bucket_id=gcp_name(args.name_prefix, "logs", max_length=100),
            retention_days=args.log_retention_days,
            opts=child,
        )
        gcp.logging.ProjectSink(
            f"{name}-cluster-logs",
            name=gcp_name(args.name_prefix, "cluster-logs", max_length=100),
            project=args.project,
            destination=pulumi.Output.concat("logging.googleapis.com/", bucket.id),
            filter=f'resource.labels.cluster_name="{args.cluster_name}"',
            unique_writer_identity=True,
            opts=child,
        )
        channels = email_channels(name, args.project, args.alert_emails, args.labels, self)
        for alert, (metric, threshold, why) in CLUSTER_ALERTS.items():
            gcp.monitoring.AlertPolicy(
                f"{name}-{alert}",
                project=args.project,
                display_name=f"{args.name_prefix}: {why}",
                combiner="OR",
                conditions=[
                    gcp.monitoring.AlertPolicyConditionArgs(
                        display_name=why,
                        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
                            filter=f'{metric} AND resource.labels.cluster_name="{args.cluster_name}"',
                            comparison="COMPARISON_GT",
                            threshold_value=threshold,
                            duration="600s",
                            aggregations=[
                                gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
                                    alignment_period="300s",
                                    per_series_aligner="ALIGN_DELTA" if "restart" in alert else "ALIGN_MEAN",
                                )
                            ],
                        ),
                    )
                ],
                notification_channels=channels,
                documentation=gcp.monitoring.AlertPolicyDocumentationArgs(
                    content=f"{why} in {args.cluster_name}. See the runbook in the repository README.",
                    mime_type="text/markdown",
                ),
                user_labels={**args.labels, "cluster": args.cluster_name},
                opts=child,
            )
        self.log_bucket = bucket.id
        self.register_outputs({"log_bucket": self.log_bucket})

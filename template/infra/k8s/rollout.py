"""Progressive delivery of serving as plain data: an Argo Rollouts `Rollout` whose canary steps come from
the stack file (`serving.canary`), gated by an `AnalysisTemplate` over Prometheus, and the controller's
chart values.

Git stays the desired state: a change of the pinned version (or image, or shadow) changes the pod
template, and the controller moves traffic to the new pods step by step while the analysis measures
only them (their `rollouts_pod_template_hash` label, which the ServiceMonitor copies onto every series):
- error ratio: 5xx answers of all answers, at most `monitoring.error_rate_pct`;
- p95 latency of /predict, at most `monitoring.p95_latency_ms`;
- shadow agreement (while a shadow runs): the candidate agrees with the champion on at least
  `canary.min_shadow_agreement` of the rows.
Each metric passes when there is no traffic yet to judge (nothing failed). A failed analysis aborts
the rollout (all traffic back to the stable pods); `mlops rollout status` then fails the deploy
workflow, which reverts the pin as a rollback does. Without a service mesh the weights are pod counts
(ceil(weight x replicas / 100) new pods), which is what Argo Rollouts' basic canary does.
"""

from __future__ import annotations

from infra.k8s.apps import SERVING
from infra.k8s.objects import APP_LABEL, Obj, metadata
from infra.settings import CanarySettings, MonitoringSettings

ROLLOUTS_CHART = "argo-rollouts"
ROLLOUTS_VERSION = "2.41.0"  # Argo Rollouts v1.9.0; its CRD schemas: infra/k8s/crds/argo-rollouts.json
ROLLOUTS_REPO = "https://argoproj.github.io/argo-helm"
ROLLOUTS_NAMESPACE = "argo-rollouts"
API_VERSION = "argoproj.io/v1alpha1"
ANALYSIS = "serving-canary"
HASH_LABEL = "rollouts_pod_template_hash"  # the pod label rollouts-pod-template-hash, on every series
# kube-prometheus-stack's Prometheus for release `prometheus` (infra/k8s/components.py: Observability).
PROMETHEUS_URL = "http://prometheus-kube-prometheus-prometheus.monitoring.svc.cluster.local:9090"
WINDOW = "2m"


def canary_steps(canary: CanarySettings) -> list[Obj]:
    steps: list[Obj] = []
    for step in canary.steps:
        steps.append({"setWeight": step.weight})
        if step.pause_minutes:
            steps.append({"pause": {"duration": f"{step.pause_minutes}m"}})
    return steps


def rollout(namespace: str, labels: dict[str, str], template: Obj, canary: CanarySettings) -> Obj:
    """The serving workload as a Rollout (the HPA scales it; it has no replicas of its own)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": metadata(SERVING, namespace, labels),
        "spec": {
            "selector": {"matchLabels": {APP_LABEL: SERVING}},
            "template": template,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 900,
            "progressDeadlineAbort": True,  # a rollout that cannot progress is aborted, not left half-way
            "strategy": {
                "canary": {
                    "maxSurge": 1,
                    "maxUnavailable": 0,
                    "canaryMetadata": {"labels": {"mlops/track": "canary"}},
                    "stableMetadata": {"labels": {"mlops/track": "stable"}},
                    # In the background from the first step on: any failed measurement aborts the rollout.
                    "analysis": {
                        "templates": [{"templateName": ANALYSIS}],
                        "startingStep": 1,
                        "args": [{"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}],
                    },
                    "steps": canary_steps(canary),
                }
            },
        },
    }


def analysis_queries(namespace: str, *, shadow: bool) -> dict[str, str]:
    """PromQL over the new pods only; each returns one number (or nothing without traffic)."""
    canary = "{" + f'namespace="{namespace}",{HASH_LABEL}="{{{{args.canary-hash}}}}"'
    answers = f"sum(rate(model_responses_total{canary}}}[{WINDOW}]))"
    failures = f'sum(rate(model_responses_total{canary},code=~"5.."}}[{WINDOW}]))'
    buckets = f"sum by (le) (rate(model_request_duration_seconds_bucket{canary}}}[{WINDOW}]))"
    queries = {
        "error-ratio": f"{failures} / {answers}",
        "latency-p95": f"histogram_quantile(0.95, {buckets})",
    }
    if shadow:
        agreed = f'sum(rate(model_shadow_rows_total{canary},agreement="agree"}}[10m]))'
        scored = f"sum(rate(model_shadow_rows_total{canary}}}[10m]))"
        queries["shadow-agreement"] = f"{agreed} / {scored}"
    return queries


def _condition(comparison: str) -> str:
    """Passes without data (an empty vector or NaN: no traffic yet), else when `comparison` holds."""
    return f"len(result) == 0 || isNaN(result[0]) || result[0] {comparison}"


def analysis_template(
    namespace: str, labels: dict[str, str], monitoring: MonitoringSettings, canary: CanarySettings, *, shadow: bool
) -> Obj:
    limits = {
        "error-ratio": f"<= {monitoring.error_rate_pct / 100:g}",
        "latency-p95": f"<= {monitoring.p95_latency_ms / 1000:g}",
        "shadow-agreement": f">= {canary.min_shadow_agreement:g}",
    }
    metrics = [
        {
            "name": name,
            "interval": f"{canary.analysis_interval_seconds}s",
            "failureLimit": canary.failure_limit,
            "successCondition": _condition(limits[name]),
            "provider": {"prometheus": {"address": PROMETHEUS_URL, "query": query}},
        }
        for name, query in analysis_queries(namespace, shadow=shadow).items()
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": metadata(ANALYSIS, namespace, labels),
        "spec": {"args": [{"name": "canary-hash"}], "metrics": metrics},
    }


def rollouts_values() -> Obj:
    """The controller on the system pool, non-root (the chart's default security context), no dashboard."""
    return {
        "installCRDs": True,
        "keepCRDs": True,  # uninstalling the chart must not delete every Rollout with its CRD
        "controller": {
            "replicas": 1,
            "nodeSelector": {"workload": "system"},
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
        },
        "dashboard": {"enabled": False},
        "notifications": {"secret": {"create": False}},
    }

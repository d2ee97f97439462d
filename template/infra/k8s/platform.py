"""Namespace-level objects as plain data: Pod Security, NetworkPolicies, RBAC, and the Prometheus rules."""

from __future__ import annotations

from typing import Any

from infra.k8s.apps import MINIO, POSTGRES, SERVING, SERVING_PORT, TRACKING, TRACKING_PORT
from infra.k8s.objects import APP_LABEL, Obj, metadata
from infra.settings import MonitoringSettings

MONITORING_NAMESPACE = "monitoring"
DASHBOARD_LABEL = "grafana_dashboard"  # Grafana's sidecar loads ConfigMaps with this label
# Kubernetes groups bound by the RoleBindings; EKS access entries and GKE subjects map people to them.
DATA_SCIENTISTS = "data-scientists"
ML_ENGINEERS = "ml-engineers"


def namespace(name: str, labels: dict[str, str], level: str = "restricted") -> Obj:
    """A namespace that enforces a Pod Security Standard (restricted for the apps)."""
    security = {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "audit", "warn")}
    security["pod-security.kubernetes.io/audit"] = "restricted"
    security["pod-security.kubernetes.io/warn"] = "restricted"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(name, None, {**labels, **security})}


def _policy(name: str, ns: str, labels: dict[str, str], selector: dict[str, Any], spec: Obj) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(name, ns, labels),
        "spec": {"podSelector": selector, **spec},
    }


def _app(name: str) -> dict[str, Any]:
    return {"matchLabels": {APP_LABEL: name}}


def _port(port: int, protocol: str = "TCP") -> dict[str, Any]:
    return {"port": port, "protocol": protocol}


def network_policies(ns: str, labels: dict[str, str], *, minio: bool = False) -> list[Obj]:
    """Deny everything, then allow exactly the paths the apps use."""
    same_namespace: Obj = {"podSelector": {}}
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}}
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [_port(53, "UDP"), _port(53, "TCP")],
    }
    policies = [
        _policy("default-deny", ns, labels, {}, {"policyTypes": ["Ingress", "Egress"]}),
        _policy(
            "allow-egress",
            ns,
            labels,
            {},
            {
                "policyTypes": ["Egress"],
                # DNS, the other apps of the namespace, and HTTPS (object storage, STS, the model registry's APIs).
                "egress": [dns, {"to": [same_namespace]}, {"ports": [_port(443)]}],
            },
        ),
        _policy(
            "allow-serving",
            ns,
            labels,
            _app(SERVING),
            {
                "policyTypes": ["Ingress"],
                # Clients inside the cluster (no public exposure by default) and Prometheus.
                "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [_port(SERVING_PORT)]}],
            },
        ),
        _policy(
            "allow-tracking",
            ns,
            labels,
            _app(TRACKING),
            {
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [same_namespace, monitoring], "ports": [_port(TRACKING_PORT)]}],
            },
        ),
        _policy(
            "allow-postgres",
            ns,
            labels,
            _app(POSTGRES),
            {
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": _app(TRACKING)}], "ports": [_port(5432)]}],
            },
        ),
    ]
    if minio:
        policies.append(
            _policy(
                "allow-minio",
                ns,
                labels,
                _app(MINIO),
                {"policyTypes": ["Ingress"], "ingress": [{"from": [same_namespace], "ports": [_port(9000)]}]},
            )
        )
    return policies


READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete"]


def rbac_objects(ns: str, labels: dict[str, str], group_prefix: str, subjects: dict[str, list[Obj]]) -> list[Obj]:
    """Read-only for data scientists, deploy rights (no secrets, no exec) for ML engineers, in the app namespace."""
    readable = [
        {
            "apiGroups": [""],
            "resources": ["pods", "pods/log", "services", "configmaps", "events", "persistentvolumeclaims"],
            "verbs": READ,
        },
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": READ},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": READ},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ},
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts", "analysisruns", "analysistemplates"], "verbs": READ},
    ]
    deployable = [
        {"apiGroups": [""], "resources": ["pods", "pods/log", "services", "configmaps", "events"], "verbs": READ},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
        {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": WRITE},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": READ + WRITE},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["update", "patch"]},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": READ + WRITE},
        {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": READ + WRITE},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": READ + WRITE},
        # Watch, pause, promote or abort a rollout (`kubectl argo rollouts`); its desired state stays in git.
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts", "analysisruns", "analysistemplates"], "verbs": READ},
        {"apiGroups": ["argoproj.io"], "resources": ["rollouts", "rollouts/status"], "verbs": ["update", "patch"]},
    ]
    objects: list[Obj] = []
    for role, rules in ((DATA_SCIENTISTS, readable), (ML_ENGINEERS, deployable)):
        group = {"kind": "Group", "name": f"{group_prefix}:{role}", "apiGroup": "rbac.authorization.k8s.io"}
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": metadata(role, ns, labels),
                "rules": rules,
            }
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": metadata(role, ns, labels),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
                "subjects": [group, *subjects.get(role, [])],
            }
        )
    return objects


def google_subjects(principals: list[str]) -> list[Obj]:
    """GKE RBAC subjects for `user:` and `group:` principals (groups need Google Groups for RBAC)."""
    subjects = []
    for principal in principals:
        kind, _, email = principal.partition(":")
        if kind in ("user", "group") and email:
            subjects.append({"kind": kind.capitalize(), "name": email, "apiGroup": "rbac.authorization.k8s.io"})
    return subjects


def service_monitor(ns: str, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": metadata(SERVING, ns, labels),
        "spec": {
            "selector": {"matchLabels": {APP_LABEL: SERVING}},
            "namespaceSelector": {"matchNames": [ns]},
            "endpoints": [
                {
                    "port": "http",
                    "path": "/metrics",
                    "interval": "30s",
                    # Which rollout revision a pod belongs to, on every series: the canary analysis reads
                    # only the new pods' (infra/k8s/rollout.py).
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_label_rollouts_pod_template_hash"],
                            "targetLabel": "rollouts_pod_template_hash",
                        }
                    ],
                }
            ],
        },
    }


def alert_expressions(ns: str, monitoring: MonitoringSettings) -> dict[str, str]:
    """PromQL: the error ratio over the app's response counter (every /predict answer by status code,
    timeouts and crashes included), p95 latency and the drift share over its model-labelled series."""
    # Label matchers are built by concatenation: PromQL braces next to f-string braces are hard to read.
    in_ns = "{" + f'namespace="{ns}"' + "}"
    failed = "{" + f'namespace="{ns}",code=~"5.."' + "}"
    total = f"sum(rate(model_responses_total{in_ns}[5m]))"
    errors = f"sum(rate(model_responses_total{failed}[5m]))"
    buckets = f"rate(model_request_duration_seconds_bucket{in_ns}[5m])"
    p95 = f"histogram_quantile(0.95, sum by (le, model_name, model_version) ({buckets}))"
    drift = f"max by (model_name, model_version) (model_drift_share{in_ns})"
    return {
        "ServingErrorRateHigh": f"({errors} / {total}) > {monitoring.error_rate_pct / 100:g}",
        "ServingLatencyP95High": f"{p95} > {monitoring.p95_latency_ms / 1000:g}",
        "ModelInputDrift": f"{drift} >= {monitoring.drift_threshold:g}",
    }


ALERTS = {
    "ServingErrorRateHigh": ("10m", "page"),
    "ServingLatencyP95High": ("10m", "page"),
    "ModelInputDrift": ("1h", "ticket"),  # a trend, not an outage: someone looks at it in working hours
}


def prometheus_rules(ns: str, labels: dict[str, str], monitoring: MonitoringSettings) -> Obj:
    expressions = alert_expressions(ns, monitoring)
    summaries = {
        "ServingErrorRateHigh": f"more than {monitoring.error_rate_pct:g}% of predictions fail",
        "ServingLatencyP95High": f"p95 prediction latency above {monitoring.p95_latency_ms} ms",
        "ModelInputDrift": (
            f"{monitoring.drift_threshold:.0%} or more of the input features drifted from the training data; "
            f"run `mlops drift --env <env>` and consider retraining"
        ),
    }
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata(SERVING, ns, labels),
        "spec": {
            "groups": [
                {
                    "name": f"{ns}-serving",
                    "rules": [
                        {
                            "alert": alert,
                            "expr": expr,
                            "for": ALERTS[alert][0],
                            "labels": {"severity": ALERTS[alert][1], "namespace": ns},
                            "annotations": {"summary": summaries[alert]},
                        }
                        for alert, expr in expressions.items()
                    ],
                }
            ]
        },
    }


def prometheus_stack_values(retention_days: int) -> dict[str, Any]:
    """kube-prometheus-stack: small, non-root, no node exporter (the cloud's agent collects node metrics)."""
    return {
        "nodeExporter": {"enabled": False},
        "prometheus": {
            "prometheusSpec": {
                "retention": f"{retention_days}d",
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "resources": {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "nodeSelector": {"workload": "system"},
            }
        },
        "alertmanager": {"alertmanagerSpec": {"nodeSelector": {"workload": "system"}}},
        "grafana": {
            "nodeSelector": {"workload": "system"},
            "admin": {"existingSecret": "grafana-admin"},
            # Dashboards are ConfigMaps labelled grafana_dashboard=1 in any namespace (the serving one's too).
            "sidecar": {
                "dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1", "searchNamespace": "ALL"}
            },
        },
    }

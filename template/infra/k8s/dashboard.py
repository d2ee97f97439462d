"""The serving Grafana dashboard as data, shipped in a ConfigMap that Grafana's sidecar loads.

Every query uses the serving app's own series (`apps/serving/monitoring.py`) or BentoML's, filtered
to the stack's namespace; the tests check each name against what the app exports.
"""

from __future__ import annotations

import json
import re
from typing import Any

from infra.k8s.apps import SERVING
from infra.k8s.objects import Obj, metadata
from infra.k8s.platform import DASHBOARD_LABEL, alert_expressions
from infra.settings import MonitoringSettings


def _legend(text: str) -> str:
    """`v<model_version>` -> Grafana's legend syntax, two braces around the label (written so that no
    template engine rendering this repository sees it)."""
    return re.sub(r"<(\w+)>", lambda m: "{" * 2 + m.group(1) + "}" * 2, text)


def _panel(title: str, kind: str, targets: list[tuple[str, str]], grid: tuple[int, int, int, int], **extra: Any) -> Obj:
    x, y, w, h = grid
    return {
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"expr": expr, "legendFormat": _legend(legend), "refId": chr(65 + i)}
            for i, (expr, legend) in enumerate(targets)
        ],
        **extra,
    }


def _red_above(unit: str, limit: float, **defaults: Any) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}, {"color": "red", "value": limit}]
    return {"defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}, **defaults}}


def dashboard(ns: str, monitoring: MonitoringSettings) -> dict[str, Any]:
    sel = "{" + f'namespace="{ns}"' + "}"
    error_ratio = alert_expressions(ns, monitoring)["ServingErrorRateHigh"].rpartition(" > ")[0]
    version = "model_name, model_version"
    latency = f"sum by (le, {version}) (rate(model_request_duration_seconds_bucket{sel}[5m]))"
    panels = [
        _panel(
            "Requests per second by outcome",
            "timeseries",
            [
                (
                    f"sum by (outcome, model_version) (rate(model_requests_total{sel}[5m]))",
                    "v<model_version> <outcome>",
                )
            ],
            (0, 0, 12, 8),
        ),
        _panel(
            "Error ratio (HTTP 5xx)",
            "timeseries",
            [(error_ratio, "5xx ratio")],
            (12, 0, 12, 8),
            fieldConfig=_red_above("percentunit", monitoring.error_rate_pct / 100),
        ),
        _panel(
            "Latency p50 / p95 / p99",
            "timeseries",
            [(f"histogram_quantile({q}, {latency})", f"p{int(q * 100)} v<model_version>") for q in (0.5, 0.95, 0.99)],
            (0, 8, 12, 8),
            fieldConfig={"defaults": {"unit": "s"}},
        ),
        _panel(
            "Rejected requests by reason",
            "timeseries",
            [(f"sum by (reason) (rate(model_rejected_requests_total{sel}[5m]))", "<reason>")],
            (12, 8, 12, 8),
        ),
        _panel(
            "Prediction score distribution",
            "heatmap",
            [(f"sum by (le) (increase(model_prediction_score_bucket{sel}[5m]))", "<le>")],
            (0, 16, 12, 8),
        ),
        _panel(
            "Predicted class share",
            "timeseries",
            [
                (
                    f"sum by (predicted_class) (rate(model_predictions_total{sel}[5m])) / ignoring(predicted_class) "
                    f"group_left sum(rate(model_predictions_total{sel}[5m]))",
                    "class <predicted_class>",
                )
            ],
            (12, 16, 12, 8),
            fieldConfig={"defaults": {"unit": "percentunit"}},
        ),
        _panel(
            "Input drift share (features drifted from training)",
            "timeseries",
            [(f"max by ({version}) (model_drift_share{sel})", "v<model_version>")],
            (0, 24, 12, 8),
            fieldConfig=_red_above("percentunit", monitoring.drift_threshold, max=1),
        ),
        _panel(
            "Rows in the drift sample / rows received",
            "timeseries",
            [
                (f"max by (model_version) (model_drift_sample_rows{sel})", "sample v<model_version>"),
                (f"sum by (model_version) (rate(model_input_rows_total{sel}[5m]))", "rows/s v<model_version>"),
            ],
            (12, 24, 12, 8),
        ),
        _panel(
            "Feature drift (KS statistic)",
            "table",
            [(f"max by (feature) (model_feature_drift_statistic{sel})", "<feature>")],
            (0, 32, 8, 10),
        ),
        _panel(
            "Feature means (drift sample)",
            "timeseries",
            [(f"max by (feature) (model_input_feature_mean{sel})", "<feature>")],
            (8, 32, 8, 10),
        ),
        _panel(
            "Feature standard deviations (drift sample)",
            "timeseries",
            [(f"max by (feature) (model_input_feature_stddev{sel})", "<feature>")],
            (16, 32, 8, 10),
        ),
        _panel(
            "Shadow: agreement with the served version",
            "timeseries",
            [
                (
                    f"sum by ({version}, shadow_version) "
                    f'(rate(model_shadow_rows_total{sel[:-1]},agreement="agree"}}[5m]))'
                    f" / sum by ({version}, shadow_version) (rate(model_shadow_rows_total{sel}[5m]))",
                    "v<shadow_version> beside v<model_version>",
                )
            ],
            (0, 42, 8, 8),
            fieldConfig={"defaults": {"unit": "percentunit", "max": 1}},
        ),
        _panel(
            "Shadow: requests scored, dropped, failed",
            "timeseries",
            [
                (
                    f"sum by (shadow_version, outcome) (rate(model_shadow_requests_total{sel}[5m]))",
                    "v<shadow_version> <outcome>",
                )
            ],
            (8, 42, 8, 8),
        ),
        _panel(
            "Shadow: the candidate's p95 time and score difference",
            "timeseries",
            [
                (
                    "histogram_quantile(0.95, sum by (le, shadow_version) "
                    f"(rate(model_shadow_duration_seconds_bucket{sel}[5m])))",
                    "p95 seconds v<shadow_version>",
                ),
                (
                    "histogram_quantile(0.5, sum by (le, shadow_version) "
                    f"(rate(model_shadow_score_difference_bucket{sel}[5m])))",
                    "median score difference v<shadow_version>",
                ),
            ],
            (16, 42, 8, 8),
        ),
    ]
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
    return {
        "uid": f"{ns}-serving"[:40],
        "title": f"Model serving ({ns})",
        "tags": ["mlops", "serving", ns],
        "timezone": "utc",
        "schemaVersion": 39,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def dashboard_config_map(ns: str, labels: dict[str, str], monitoring: MonitoringSettings) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"{SERVING}-dashboard", ns, {**labels, DASHBOARD_LABEL: "1"}),
        "data": {"model-serving.json": json.dumps(dashboard(ns, monitoring), indent=1, sort_keys=True)},
    }

"""Custom resources checked against the CRD schemas of the chart that installs them (the Argo Rollouts
chart pinned in `infra/k8s/rollout.py`; its schemas are in `infra/k8s/crds/argo-rollouts.json`).

Strictly, as `kubectl apply` checks fields: an object schema that lists its properties and does not
preserve unknown fields accepts no others (the API server would drop or refuse a misspelled field).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema

from infra.k8s.rollout import ROLLOUTS_VERSION
from tests.conftest import ROOT

SCHEMAS = ROOT / "infra" / "k8s" / "crds" / "argo-rollouts.json"


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@functools.cache
def validators() -> dict[str, tuple[str, jsonschema.Draft7Validator]]:
    data = json.loads(SCHEMAS.read_text())
    assert data["chart_version"] == ROLLOUTS_VERSION, f"{SCHEMAS} is not of the pinned chart {ROLLOUTS_VERSION}"
    return {
        kind: (entry["apiVersion"], jsonschema.Draft7Validator(_strict(entry["schema"])))
        for kind, entry in data["schemas"].items()
    }


def validate_custom(obj: dict[str, Any]) -> None:
    """Raises jsonschema.ValidationError naming the path of the first bad field."""
    api_version, validator = validators()[obj["kind"]]
    assert obj["apiVersion"] == api_version, f"{obj['kind']}: apiVersion {obj['apiVersion']}, CRD {api_version}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise error

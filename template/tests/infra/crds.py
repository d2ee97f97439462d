"""Custom resources checked against the CRD schemas of the chart that installs them: the Argo Rollouts
chart pinned in `infra/k8s/rollout.py` (`infra/k8s/crds/argo-rollouts.json`) and the sigstore
policy-controller chart pinned in `infra/k8s/admission.py` (`infra/k8s/crds/policy-controller.json`, which
also holds the chart's values schema, checked as Helm checks it).

Strictly, as `kubectl apply` checks fields: an object schema that lists its properties and does not
preserve unknown fields accepts no others (the API server would drop or refuse a misspelled field).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema

from infra.k8s.admission import POLICY_CONTROLLER_VERSION
from infra.k8s.rollout import ROLLOUTS_VERSION
from tests.conftest import ROOT

CRDS = ROOT / "infra" / "k8s" / "crds"
# Each vendored schema file and the chart version pinned in the program.
SCHEMAS = {CRDS / "argo-rollouts.json": ROLLOUTS_VERSION, CRDS / "policy-controller.json": POLICY_CONTROLLER_VERSION}


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


def _load(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    assert data["chart_version"] == SCHEMAS[path], f"{path} is not of the pinned chart {SCHEMAS[path]}"
    return data


@functools.cache
def validators() -> dict[str, tuple[str, jsonschema.Draft7Validator]]:
    return {
        kind: (entry["apiVersion"], jsonschema.Draft7Validator(_strict(entry["schema"])))
        for path in SCHEMAS
        for kind, entry in _load(path)["schemas"].items()
    }


def validate_policy_controller_values(values: dict[str, Any]) -> None:
    """The chart's own values schema, as `helm install` applies it (not strict: it lists what it checks)."""
    schema = _load(CRDS / "policy-controller.json")["values"]
    error = jsonschema.exceptions.best_match(jsonschema.Draft7Validator(schema).iter_errors(values))
    if error is not None:
        raise error


def validate_custom(obj: dict[str, Any]) -> None:
    """Raises jsonschema.ValidationError naming the path of the first bad field."""
    api_version, validator = validators()[obj["kind"]]
    assert obj["apiVersion"] == api_version, f"{obj['kind']}: apiVersion {obj['apiVersion']}, CRD {api_version}"
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is not None:
        raise error

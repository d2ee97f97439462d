"""Every planned resource's inputs against the installed SDKs' typed classes (`tests/infra/schemas.py`)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelines.plan.graph import Plan, PlannedResource
from tests.infra.schemas import resource_problems
from tests.planning import STACKS

CUSTOM = ("monitoring.coreos.com/", "argoproj.io/", "policy.sigstore.dev/")  # checked by their CRDs' schemas


@pytest.mark.parametrize("stack", STACKS)
def test_every_planned_input_is_one_the_provider_knows(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    problems, walked = [], 0
    for resource in plan.resources:
        if not resource.custom or resource.type.startswith("pulumi:providers:"):
            continue
        found = resource_problems(resource.type, resource.name, resource.inputs)
        if found is None:
            assert any(group in resource.type for group in CUSTOM), f"no typed class for {resource.type}"
            continue
        walked += 1
        problems += found
    assert walked > 40 and problems == [], "\n".join(problems)


def _first(plans: dict[str, Plan], type_: str) -> PlannedResource:
    return next(r for r in plans["local"].resources if r.type == type_)


def _container(inputs: dict[str, Any]) -> dict[str, Any]:
    return inputs["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(
    ("type_", "change", "complaint"),
    [
        (
            "kubernetes:apps/v1:Deployment",
            lambda i: _container(i)["securityContext"].update(runAsNonRot=True),
            "SecurityContextArgs has no such input",
        ),
        ("kubernetes:apps/v1:Deployment", lambda i: i.pop("spec"), "requires spec"),
        ("kubernetes:apps/v1:Deployment", lambda i: i["spec"].update(replicas="two"), "'two' is none of ['int']"),
        ("random:index/randomPassword:RandomPassword", lambda i: i.update(number=True), "number: deprecated"),
    ],
)
def test_the_walk_finds_what_the_engine_would(plans: dict[str, Plan], type_: str, change: Any, complaint: str) -> None:
    resource = _first(plans, type_)
    inputs = copy.deepcopy(resource.inputs)
    assert resource_problems(type_, resource.name, inputs) == []
    change(inputs)
    found = resource_problems(type_, resource.name, inputs) or []
    assert any(complaint in problem for problem in found), found

"""Plans of the repository's own stacks, made once per test session (the SDKs take seconds to load)."""

from __future__ import annotations

import importlib
import inspect
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.config import list_stacks, project_name
from pipelines.plan import Plan, PlannedResource, plan_stack, plan_stacks
from tests.conftest import ROOT

PROJECT = project_name(ROOT)
STACKS = list_stacks(ROOT)
TAG_KEYS = ("project", "environment", "owner", "cost-center", "managed-by")


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    return {plan.stack: plan for plan in plan_stacks(ROOT, STACKS)}


@pytest.fixture
def plan_with(tmp_path: Path) -> Callable[[str, Callable[[dict[str, Any]], None]], Plan]:
    """Plan a stack after `change` edited its config (a scratch copy of Pulumi.yaml and stacks/)."""

    def make(stack: str, change: Callable[[dict[str, Any]], None]) -> Plan:
        (tmp_path / "stacks").mkdir(exist_ok=True)
        shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
        yaml = YAML()
        document = yaml.load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
        change(document["config"])
        with (tmp_path / "stacks" / f"Pulumi.{stack}.yaml").open("w") as handle:
            yaml.dump(document, handle)
        return plan_stack(tmp_path, stack)

    return make


def key(name: str) -> str:
    return f"{PROJECT}:{name}"


def one(plan: Plan, type_: str, name_suffix: str = "") -> PlannedResource:
    found = [r for r in plan.of_type(type_) if r.name.endswith(name_suffix)]
    assert len(found) == 1, f"expected one {type_} named *{name_suffix}, found {[r.name for r in found]}"
    return found[0]


def containers(resource: PlannedResource) -> list[dict[str, Any]]:
    return resource.inputs["spec"]["template"]["spec"]["containers"]


@cache
def tag_field(token: str) -> str | None:
    """The input that carries tags/labels for a resource type, read from the SDK class (None: not taggable)."""
    package, module, name = token.split(":")
    if package not in ("aws", "gcp"):
        return None
    path = f"pulumi_{package}" + ("" if module.startswith("index") else f".{module.split('/')[0]}")
    cls = getattr(importlib.import_module(path), name)
    params = inspect.signature(cls._internal_init).parameters
    for candidate in ("tags",) if package == "aws" else ("resource_labels", "user_labels", "labels"):
        if candidate in params:
            return "".join(w.capitalize() if i else w for i, w in enumerate(candidate.split("_")))
    return None

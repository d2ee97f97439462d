"""Helpers for tests of planned stacks: scratch stack files with images pinned, and lookups in a plan.
The plans themselves are fixtures in `tests/conftest.py` (made once per session: the SDKs load slowly)."""

from __future__ import annotations

import importlib
import inspect
import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from infra.config import list_stacks, project_name
from pipelines.plan.graph import Plan, PlannedResource
from tests.conftest import DIGESTS, ROOT, pin_built_images

PROJECT = project_name(ROOT)
STACKS = list_stacks(ROOT)
TAG_KEYS = ("project", "environment", "owner", "cost-center", "managed-by")


# The plans below are of the stacks as the images workflow leaves them, with `DIGESTS` pinned (the
# rendered files pin nothing yet: the apps are not deployed).


def write_stack(root: Path, stack: str, change: Callable[[dict[str, Any]], None] | None = None) -> None:
    """A scratch copy of Pulumi.yaml and one stack file under `root`, images pinned, then `change` applied."""
    (root / "stacks").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    shutil.copy(ROOT / "stacks" / path.name, path)
    pin_built_images(root, [stack])
    if change is not None:
        yaml = YAML()
        document = yaml.load(path.read_text())
        change(document["config"])
        with path.open("w") as handle:
            yaml.dump(document, handle)


def stack_images(plan: Plan, image: str) -> set[str]:
    """What the plan's clusters should pull for `image`: the pinned digest in each cloud's registry."""
    found = set()
    for cloud in plan.clouds:
        registry = plan.outputs[cloud]["registry"]
        repository = plan.outputs[cloud]["repositories"][image] if cloud == "aws" else image
        found.add(f"{registry}/{repository}@{DIGESTS[image]}")
    return found


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

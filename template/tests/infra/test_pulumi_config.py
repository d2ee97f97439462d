"""Inside `pulumi up`: the settings come from `pulumi.Config` and must equal what the CLI reads from the file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from pulumi.runtime import config as runtime_config
from ruamel.yaml import YAML

from infra.config import SettingsError, load_from_pulumi, load_stack, project_name
from tests.conftest import ROOT

PROJECT = project_name(ROOT)


class NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def as_pulumi_config(config: dict[str, Any]) -> dict[str, str]:
    """How the engine hands config to a program: every value a string, objects as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}


@pytest.fixture
def pulumi_stack() -> Iterator[Any]:
    def use(stack: str, config: dict[str, Any]) -> None:
        pulumi.runtime.set_mocks(NoResources(), project=PROJECT, stack=stack, preview=True)
        runtime_config.set_all_config(as_pulumi_config(config))

    yield use
    runtime_config.set_all_config({})


def stack_config(stack: str) -> dict[str, Any]:
    return dict(YAML(typ="safe").load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"])


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_pulumi_config_route_equals_file_route(pulumi_stack: Any, stack: str) -> None:
    pulumi_stack(stack, stack_config(stack))
    assert load_from_pulumi() == load_stack(ROOT, stack)


def test_bad_value_inside_pulumi_names_the_stack_file_and_key(pulumi_stack: Any) -> None:
    config = stack_config("prod")
    config[f"{PROJECT}:serving"] = {**config[f"{PROJECT}:serving"], "max_replicas": 0}
    pulumi_stack("prod", config)
    with pytest.raises(SettingsError) as raised:
        load_from_pulumi()
    message = str(raised.value)
    assert message.startswith("stacks/Pulumi.prod.yaml is invalid:")
    assert f"{PROJECT}:serving.max_replicas" in message and "greater than or equal to 1" in message


def test_stack_name_must_match_the_environment(pulumi_stack: Any) -> None:
    pulumi_stack("staging", stack_config("prod"))
    with pytest.raises(SettingsError, match="the stack is 'staging'"):
        load_from_pulumi()

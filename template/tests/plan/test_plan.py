"""`mlops plan`: every default stack plans offline, carries the tags, and exposes the outputs people need."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import SettingsError
from pipelines.cli import main
from pipelines.plan.graph import Plan
from pipelines.plan.mocks import SECRET
from pipelines.plan.offline import plan_stack
from tests.conftest import ROOT
from tests.planning import STACKS, TAG_KEYS, key, tag_field


def test_every_default_stack_plans(plans: dict[str, Plan]) -> None:
    assert set(plans) == {"local", "dev", "staging", "prod"}
    for name, plan in plans.items():
        assert plan.environment == name
        assert sum(1 for r in plan.resources if r.custom) > 20, name
        assert not any("[unknown]" in json.dumps(r.inputs) for r in plan.resources), name


def test_every_taggable_resource_carries_the_stack_tags(plans: dict[str, Plan]) -> None:
    checked = 0
    for plan in plans.values():
        expected = {"project": plan.project, "environment": plan.environment, "managed-by": "pulumi"}
        for resource in plan.resources:
            if not resource.custom:
                continue
            if resource.type.startswith("kubernetes:") and "metadata" in resource.inputs:
                labels = resource.inputs["metadata"].get("labels", {})
            elif (field := tag_field(resource.type)) is not None:
                labels = resource.inputs.get(field, {})
            else:
                continue
            checked += 1
            missing = [k for k in TAG_KEYS if k not in labels]
            assert not missing, f"{plan.stack}: {resource.type} {resource.name} lacks tags {missing}"
            assert {k: labels[k] for k in expected} == expected, f"{plan.stack}: {resource.name}"
    assert checked > 100


def test_outputs_name_what_people_need_and_hide_secrets(plans: dict[str, Plan]) -> None:
    for plan in plans.values():
        assert plan.outputs["environment"] == plan.environment
        for cloud in plan.clouds:
            outputs = plan.outputs[cloud]
            assert outputs["kubeconfig"] == SECRET
            assert outputs["mlflow_admin_password"] == SECRET
            assert outputs["bucket"] and outputs["cluster"]
            assert outputs["mlflow_url"].startswith("http://mlflow.")
            assert outputs["serving_url"].startswith("http://serving.")
            identity = outputs.get("deploy_role_arn") or outputs.get("deploy_service_account")
            assert identity and plan.environment in identity
    assert "local" in plans["local"].outputs


def test_no_secret_value_reaches_the_plan(plans: dict[str, Plan]) -> None:
    text = json.dumps([p.to_json() for p in plans.values()])
    assert "mock-" not in text  # generated passwords are masked wherever they are used
    assert "client.authentication.k8s.io" not in text  # kubeconfigs too


def test_cloud_shards_merge_to_the_whole_program(plans: dict[str, Plan], pinned_root: Path) -> None:
    """`plans` ran with parallel cloud shards; the whole program in one process must plan the same."""
    sharded = plans["prod"]
    whole = plan_stack(pinned_root, "prod")
    assert sorted((r.urn, json.dumps(r.inputs, sort_keys=True)) for r in sharded.resources) == sorted(
        (r.urn, json.dumps(r.inputs, sort_keys=True)) for r in whole.resources
    )
    assert sharded.outputs == whole.outputs


def test_bad_settings_fail_before_planning_with_the_key_path(plan_with: Any) -> None:
    def break_it(config: dict[str, Any]) -> None:
        config[key("serving")]["max_replicas"] = 0

    with pytest.raises(SettingsError) as raised:
        plan_with("prod", break_it)
    assert f"{key('serving')}.max_replicas" in str(raised.value)


def test_cli_plan_json_is_the_input_of_the_other_tools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--env", "local", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (plan,) = data["plans"]
    assert plan["stack"] == "local"
    assert plan["resource_count"] == sum(plan["counts"].values())
    assert {"type", "name", "parent", "inputs", "urn"} <= set(plan["resources"][0])


def test_cli_plan_table_and_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--env", "local"]) == 0
    table = capsys.readouterr()
    assert "resources per type" in table.out and "[secret]" in table.out
    assert "planned 1 stack(s)" in table.err
    assert main(["plan", "--env", "local", "--format", "markdown"]) == 0
    assert "<details><summary>" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "--env", "qa"], "unknown stack 'qa'"),
        (["plan"], "no stack selected"),
        (["plan", "--env", "dev", "--all"], "either --env or --all"),
    ],
)
def test_cli_plan_bad_arguments(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_stacks_listed_are_the_files() -> None:
    assert sorted(STACKS) == sorted(p.name.split(".")[1] for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))


# In a fresh interpreter, so that a regression fails this test within its timeout instead of hanging the suite.
AFTER_OTHER_MOCKS = """
import asyncio, pulumi, sys
from pathlib import Path
from pulumi.runtime import settings
from pipelines.plan.offline import plan_stack


class NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return f"{args.name}-id", args.inputs

    def call(self, args):
        return {}


asyncio.set_event_loop(asyncio.new_event_loop())
pulumi.runtime.set_mocks(NoResources(), project="other", stack="other", preview=True)  # leaves a root stack's outputs
assert settings.SETTINGS.outputs, "the scenario needs outputs left pending on another event loop"
plan = plan_stack(Path(sys.argv[1]), "local")
print(len(plan.resources), len(settings.SETTINGS.outputs))
"""


def test_a_plan_after_other_mocks_in_the_same_process_finishes() -> None:
    """Another user of Pulumi's mocks in the process (tests/infra/test_pulumi_config.py did this) leaves
    output tasks of its own event loop in the SDK's process-wide set; a plan must not wait for them."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", AFTER_OTHER_MOCKS, str(ROOT)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resources, left = map(int, result.stdout.split())
    assert resources > 0 and left == 0

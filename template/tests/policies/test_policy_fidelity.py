"""The real pack process, driven over gRPC the way the Pulumi engine drives it, agrees with `mlops policy check`.

`policies/infra/__main__.py` is started as its own process (it prints its port and serves the
Analyzer service on 127.0.0.1); the test configures it with an environment's policy config and
sends every planned resource through `Analyze` and the whole stack through `AnalyzeStack`.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from pipelines.plan.graph import Plan, PlannedResource
from pipelines.plan.policy import check_plan
from policies.infra.pack import PACK_NAME, RULES, environment_config
from tests.conftest import ROOT
from tests.planning import key

LEVELS = {"advisory": 0, "mandatory": 1, "disabled": 2}


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "policies" / "infra" / "__main__.py")],
        cwd=ROOT / "policies" / "infra",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the pack did not print its port within 30 s"
        port = int(process.stdout.readline())  # type: ignore[union-attr]
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def configure(stub: analyzer_pb2_grpc.AnalyzerStub, config: dict[str, Any]) -> None:
    """What `--policy-pack-config <env>.json` becomes on the wire: one PolicyConfig per policy."""
    wire = {}
    for rule in RULES:
        entry = config.get(rule.name, config.get("all", rule.enforcement.value))
        level = entry if isinstance(entry, str) else entry.get("enforcementLevel", config.get("all", "mandatory"))
        properties = struct_pb2.Struct()
        if isinstance(entry, dict):
            properties.update({k: v for k, v in entry.items() if k != "enforcementLevel"})
        wire[rule.name] = analyzer_pb2.PolicyConfig(enforcementLevel=LEVELS[level], properties=properties)
    stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig=wire))


def struct(inputs: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(inputs, struct_pb2.Struct())


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, plan: Plan) -> set[tuple[str, str, str, str]]:
    found: set[tuple[str, str, str, str]] = set()
    level_names = {v: k for k, v in LEVELS.items()}

    def collect(diagnostics: Any, default_urn: str) -> None:
        for d in diagnostics:
            message = d.message.split("\n", 1)[1] if "\n" in d.message else ""
            found.add((d.policyName, d.urn or default_urn, message, level_names[d.enforcementLevel]))

    for resource in plan.resources:
        if resource.custom:
            request = analyzer_pb2.AnalyzeRequest(
                type=resource.type, properties=struct(resource.inputs), urn=resource.urn, name=resource.name
            )
            collect(stub.Analyze(request).diagnostics, resource.urn)
    stack = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=r.type,
                properties=struct(r.inputs),
                urn=r.urn,
                name=r.name,
                parent=r.parent or "",
                dependencies=r.dependencies,
            )
            for r in plan.resources
        ]
    )
    collect(stub.AnalyzeStack(stack).diagnostics, "")
    return found


def offline(plan: Plan) -> set[tuple[str, str, str, str]]:
    return {(v.policy, v.urn or "", v.message, v.enforcement) for v in check_plan(plan).violations}


def test_the_pack_describes_itself(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert {p.name for p in info.policies} == {r.name for r in RULES}


@pytest.mark.parametrize("stack", ["prod", "dev", "local"])
def test_default_stacks_agree(analyzer: analyzer_pb2_grpc.AnalyzerStub, plans: dict[str, Plan], stack: str) -> None:
    configure(analyzer, environment_config(stack))
    assert analyze(analyzer, plans[stack]) == offline(plans[stack])


def break_plan(plan: Plan) -> Plan:
    """A hand-broken program: an open, unencrypted cluster endpoint, a root container, a missing tag."""
    broken = []
    for resource in plan.resources:
        inputs = json.loads(json.dumps(resource.inputs))
        if resource.type in ("aws:eks/cluster:Cluster",):
            inputs["vpcConfig"]["endpointPublicAccess"] = True
            inputs["encryptionConfig"] = {}
        if resource.type == "gcp:container/cluster:Cluster":
            inputs["privateClusterConfig"]["enablePrivateEndpoint"] = False
        if resource.type == "kubernetes:apps/v1:Deployment":
            inputs["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
        if resource.type in ("aws:ec2/vpc:Vpc", "gcp:storage/bucket:Bucket"):
            inputs.pop("tags", None)
            inputs.get("labels", {}).pop("owner", None)
        broken.append(PlannedResource(**{**resource.__dict__, "inputs": inputs}))
    return Plan(**{**plan.__dict__, "resources": broken})


def test_a_broken_stack_gets_the_same_violations(
    analyzer: analyzer_pb2_grpc.AnalyzerStub, plans: dict[str, Plan]
) -> None:
    plan = break_plan(plans["prod"])
    configure(analyzer, environment_config("prod"))
    engine = analyze(analyzer, plan)
    assert engine == offline(plan)
    policies = {policy for policy, *_ in engine}
    expected = {"kubernetes-apps-deployment-configure-non-root", "governance-tags-resource-configure-required-tags"}
    if "aws" in plan.clouds:
        expected |= {"aws-eks-cluster-disallow-open-endpoint", "aws-eks-cluster-enable-secrets-encryption"}
    if "gcp" in plan.clouds:
        expected |= {"gcp-container-cluster-disallow-open-endpoint"}
    assert policies == expected


def test_a_stack_file_over_its_ceilings_is_refused(plan_with: Any) -> None:
    def overspend(config: dict[str, Any]) -> None:
        config[key("budget")]["monthly_usd"] = 99_999

    report = check_plan(plan_with("prod", overspend))
    assert {v.policy for v in report.mandatory} == {"governance-budget-limit-configure-ceiling"}


def test_cli_policy_check_reports_and_exits_by_enforcement(repo_copy: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["policy", "check", "--env", "local", "--format", "json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)["reports"]
    assert report["stack"] == "local" and report["mandatory"] == 0 and report["rules"] == len(RULES)

    path = repo_copy / "stacks" / "Pulumi.prod.yaml"
    path.write_text(re.sub(r"monthly_usd: \d+", "monthly_usd: 99999", path.read_text()))
    assert main(["policy", "check", "--env", "prod", "--format", "markdown"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("Policy check **failed**")
    assert "governance-budget-limit-configure-ceiling" in captured.out
    assert "mandatory policy violations in prod" in captured.err


def test_cli_policy_list_shows_each_environments_enforcement(capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    assert main(["policy", "list", "--env", "prod", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(RULES) and {row["enforcement"] for row in rows} == {"mandatory"}
    assert all(row["why"] and row["remediation"] for row in rows)

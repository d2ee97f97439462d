"""`mlops plan`: the offline plan of one or every stack (resource graph, counts, outputs)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from core.errors import EnvironmentProblem
from pipelines.common.options import AllOption, EnvOption, FormatOption, repo_root, select_stacks
from pipelines.common.output import OutputFormat, Report, emit, markdown_table, progress

if TYPE_CHECKING:
    from pipelines.plan.graph import Plan

# The inputs worth a glance per resource type (the JSON carries every input).
KEY_INPUTS: dict[str, list[str]] = {
    "aws:eks/cluster:Cluster": ["version", "vpcConfig.endpointPublicAccess", "vpcConfig.publicAccessCidrs"],
    "aws:eks/nodeGroup:NodeGroup": ["capacityType", "instanceTypes", "scalingConfig", "taints"],
    "aws:ec2/vpc:Vpc": ["cidrBlock"],
    "aws:ec2/subnet:Subnet": ["cidrBlock", "availabilityZone"],
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ["rules"],
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": ["rules"],
    "aws:iam/role:Role": ["name"],
    "aws:budgets/budget:Budget": ["limitAmount", "limitUnit"],
    "aws:cloudwatch/logGroup:LogGroup": ["name", "retentionInDays"],
    "aws:cloudwatch/metricAlarm:MetricAlarm": ["metricName", "threshold"],
    "gcp:container/cluster:Cluster": ["releaseChannel", "privateClusterConfig.enablePrivateNodes"],
    "gcp:container/nodePool:NodePool": ["nodeConfig.machineType", "nodeConfig.spot", "autoscaling"],
    "gcp:compute/subnetwork:Subnetwork": ["ipCidrRange"],
    "gcp:billing/budget:Budget": ["amount.specifiedAmount.units"],
    "gcp:storage/bucket:Bucket": ["location", "publicAccessPrevention", "uniformBucketLevelAccess"],
    "kubernetes:helm.sh/v3:Release": ["chart", "version"],
}


def _dig(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def key_inputs(resource_type: str, inputs: dict[str, Any]) -> str:
    if resource_type.startswith("kubernetes:apps/v1:"):
        template = _dig(inputs, "spec.template") or {}
        images = [c.get("image") for c in _dig(template, "spec.containers") or []]
        version = _dig(template, "metadata.annotations") or {}
        pin = version.get("mlops/model-version")
        return ", ".join(images) + (f"; model version {pin}" if pin else "")
    paths = KEY_INPUTS.get(resource_type, [])
    if not paths:
        name = inputs.get("name") or _dig(inputs, "metadata.name")
        return f"name={name}" if isinstance(name, str) else ""
    parts = []
    for path in paths:
        value = _dig(inputs, path)
        if value is not None:
            parts.append(f"{path}={json.dumps(value, separators=(',', ':'))}")
    text = "; ".join(parts)
    return text if len(text) <= 160 else text[:157] + "..."


def _short(urn: str | None) -> str:
    return urn.rsplit("::", 1)[-1] if urn and "::" in urn else ""


SerialOption = Annotated[bool, typer.Option("--serial", help="Plan in one process (no parallel cloud shards).")]


def planned_stacks(envs: list[str] | None, all_stacks: bool, serial: bool) -> list[Plan]:
    """The stacks named on the command line, planned offline: what `plan`, `policy` (and later `cost`) work on."""
    root = repo_root()
    stacks = select_stacks(root, envs, all_stacks)
    # Imported here: the Pulumi SDKs take seconds to load and only the commands that plan need them.
    from pipelines.plan.graph import PlanError  # noqa: PLC0415
    from pipelines.plan.offline import plan_stacks  # noqa: PLC0415

    try:
        return plan_stacks(root, stacks, parallel=not serial, progress=progress)
    except PlanError as exc:
        raise EnvironmentProblem(
            str(exc), hint="the program in infra/ raised under the mocks; run the tests in tests/infra"
        ) from None


def plan(
    envs: EnvOption = None,
    all_stacks: AllOption = False,
    fmt: FormatOption = OutputFormat.TABLE,
    serial: SerialOption = False,
) -> None:
    """Run the Pulumi program of each stack offline (Pulumi's mocks, no credentials) and print what it would create."""
    started = time.perf_counter()
    plans = planned_stacks(envs, all_stacks, serial)
    elapsed = time.perf_counter() - started
    if fmt is OutputFormat.JSON:
        emit(
            Report(
                title="plan", columns=[], data={"plans": [p.to_json() for p in plans], "seconds": round(elapsed, 2)}
            ),
            fmt,
        )
        return
    for planned in plans:
        resources = [r for r in planned.resources if r.custom]
        where = ", ".join(planned.clouds) or "existing cluster"
        graph = Report(
            title=f"Plan of stack {planned.stack} ({planned.environment}; {where})",
            columns=["type", "name", "parent", "key inputs"],
            rows=[[r.type, r.name, _short(r.parent), key_inputs(r.type, r.inputs)] for r in resources],
        )
        counts = Report(
            title=f"{planned.stack}: resources per type", columns=["type", "count"], rows=list(planned.counts().items())
        )
        outputs = Report(
            title=f"{planned.stack}: stack outputs",
            columns=["output", "value"],
            rows=[[key, json.dumps(value)] for key, value in _flatten(planned.outputs).items()],
            footer=f"{len(resources)} resources in {len({r.type for r in resources})} types",
        )
        if fmt is OutputFormat.MARKDOWN:
            sys.stdout.write(
                f"{markdown_table(counts)}\n\n{markdown_table(outputs)}\n\n"
                f"<details><summary>{len(resources)} resources</summary>\n\n{markdown_table(graph)}\n\n</details>\n\n"
            )
        else:
            emit(graph, fmt)
            emit(counts, fmt)
            emit(outputs, fmt)
    total = sum(sum(1 for r in p.resources if r.custom) for p in plans)
    progress(f"planned {len(plans)} stack(s), {total} resources, in {elapsed:.1f} s; no credentials used")


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}

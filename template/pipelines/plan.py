"""Run the Pulumi program of a stack offline, under Pulumi's mock runtime, and record the resource graph.

Pulumi's unit-testing route (`pulumi.runtime.set_mocks`) stands in for the engine: the program in
`infra/__main__.py` runs unchanged with the real stack file as its configuration, and every
resource registration is recorded *as the engine would receive it* (camelCase property names,
numbers as floats, secrets marked). That record is the plan: the input of `mlops policy` and
`mlops cost`. No credentials, no network, no Pulumi CLI.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import hashlib
import importlib
import json
import multiprocessing
import os
import runpy
import sys
import time
import types
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import wait_for_rpcs
from ruamel.yaml import YAML

import infra
from infra.config import load_stack, project_name, stack_file
from pipelines.cost import Assumptions


def program() -> Path:
    """The Pulumi program (Pulumi.yaml: `main: infra/`) of the `infra` package imported now: this
    checkout's, or another ref's while `pipelines.gitref.program_of` stands it in. Stack files may
    come from another root (tests)."""
    package = importlib.import_module("infra")
    return Path(package.__file__ or infra.__file__).parent / "__main__.py"


# The engine's wire markers inside a property struct.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 (a wire marker)
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
SECRET = "[secret]"  # noqa: S105 (what a masked value prints as)

MOCK_ACCOUNT = "123456789012"
MOCK_PROJECT_NUMBER = "123456789012"


class PlanError(RuntimeError):
    """The program failed under the mocks: the message names the stack and the failing step."""


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str | None
    custom: bool
    inputs: dict[str, Any]
    provider: str | None = None
    dependencies: list[str] = field(default_factory=list)


@dataclass
class Plan:
    project: str
    stack: str
    environment: str
    clouds: list[str]
    resources: list[PlannedResource]
    outputs: dict[str, Any]
    seconds: float
    # What the cost estimate assumes beyond the resources (pipelines.cost.Assumptions as JSON).
    assumptions: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(r.type for r in self.resources if r.custom).items()))

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "stack": self.stack,
            "environment": self.environment,
            "clouds": self.clouds,
            "resource_count": sum(1 for r in self.resources if r.custom),
            "counts": self.counts(),
            "resources": [asdict(r) for r in self.resources],
            "outputs": self.outputs,
            "assumptions": self.assumptions,
        }


def _clean(value: Any) -> Any:
    """Turn a decoded property struct into plain JSON, with secrets masked and unknowns marked."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return SECRET
        return {key: _clean(item) for key, item in value.items() if key != SECRET_SIG}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if value == UNKNOWN:
        return "[unknown]"
    return value


class RecordingMonitor(runtime_mocks.MockMonitor):
    """The mock monitor, plus a record of every registration exactly as it reached the 'engine'."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[PlannedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                PlannedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    custom=bool(request.custom),
                    inputs=_clean(json_format.MessageToDict(request.object)),
                    provider=request.provider or None,
                    dependencies=list(request.dependencies),
                )
            )
        return response


def _short_hash(*parts: str, length: int = 7) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class PlanMocks(pulumi.runtime.Mocks):
    """What the clouds would answer: inputs echoed, plus plausible computed outputs (ids, ARNs, endpoints)."""

    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        token = args.typ
        suffix = _short_hash(token, args.name)
        physical = state.get("name") or f"{args.name}-{suffix}"
        package, _, rest = token.partition(":")
        if package == "aws":
            service = rest.split("/", 1)[0]
            state.setdefault("arn", f"arn:aws:{service}:{self.region}:{MOCK_ACCOUNT}:{physical}")
        computed = self._computed(token, state, physical, suffix)
        resource_id = computed.pop("id", f"{physical}-id")
        state.update(computed)
        return resource_id, state

    def _computed(self, token: str, state: dict[str, Any], physical: str, suffix: str) -> dict[str, Any]:
        region, project = self.region, state.get("project")
        lowered = physical.lower()
        key_id = f"{suffix}-0000-0000-0000-000000000000"
        pool, provider = state.get("workloadIdentityPoolId"), state.get("workloadIdentityPoolProviderId")
        pools = f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools"
        email = f"{state.get('accountId')}@{project}.iam.gserviceaccount.com"
        computed: dict[str, dict[str, Any]] = {
            "aws:s3/bucket:Bucket": {"bucket": lowered, "arn": f"arn:aws:s3:::{lowered}"},
            "aws:iam/role:Role": {"arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/{physical}", "name": physical},
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": {
                "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{str(state.get('url', physical)).removeprefix('https://')}"
            },
            "aws:kms/key:Key": {"keyId": key_id, "arn": f"arn:aws:kms:{region}:{MOCK_ACCOUNT}:key/{key_id}"},
            "aws:eks/cluster:Cluster": {
                "endpoint": f"https://{suffix.upper()}.gr7.{region}.eks.amazonaws.com",
                "certificateAuthority": {"data": "TU9DSy1DQQ=="},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{suffix.upper()}"}]}],
            },
            "aws:eks/nodeGroup:NodeGroup": {"nodeGroupName": f"{state.get('nodeGroupNamePrefix', physical)}{suffix}"},
            "gcp:container/cluster:Cluster": {
                "endpoint": "172.16.0.2",
                "masterAuth": {"clusterCaCertificate": "TU9DSy1DQQ=="},
            },
            "gcp:serviceaccount/account:Account": {
                "email": email,
                "name": f"projects/{project}/serviceAccounts/{email}",
            },
            "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": {"name": f"{pools}/{pool}"},
            "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": {
                "name": f"{pools}/{pool}/providers/{provider}"
            },
            "gcp:storage/bucket:Bucket": {"name": lowered, "url": f"gs://{lowered}"},
            "gcp:kms/keyRing:KeyRing": {
                "id": f"projects/{project}/locations/{state.get('location')}/keyRings/{physical}"
            },
            "gcp:kms/cryptoKey:CryptoKey": {"id": f"{state.get('keyRing')}/cryptoKeys/{physical}"},
            "gcp:logging/projectBucketConfig:ProjectBucketConfig": {
                "id": f"projects/{project}/locations/{state.get('location')}/buckets/{state.get('bucketId')}"
            },
            "gcp:billing/budget:Budget": {"name": f"billingAccounts/{state.get('billingAccount')}/budgets/{suffix}"},
            "random:index/randomPassword:RandomPassword": {"result": f"mock-{suffix}"},
        }
        return dict(computed.get(token, {}))

    # The SDK accepts a plain dict (no check failures) although the base class declares a tuple.
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": MOCK_ACCOUNT,
                "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:user/plan",
                "userId": "PLAN",
            },
            "gcp:organizations/getProject:getProject": {
                "number": MOCK_PROJECT_NUMBER,
                "projectId": args.args.get("projectId"),
                "name": args.args.get("projectId"),
            },
        }
        if args.token not in answers:
            raise PlanError(
                f"the program calls {args.token}, which the offline plan cannot answer (add it to PlanMocks.call)"
            )
        return answers[args.token]


def engine_config(raw: dict[str, Any]) -> dict[str, str]:
    """How the engine hands config to a program: every value a string, objects as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}


@contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


# Each cloud's part of the program is one function in its own module, imported only when the stack uses
# that cloud. A shard plans a stack with the *other* cloud's module replaced by a stub, so two processes
# can plan the two clouds of a stack in parallel (and each imports only its own cloud's SDK, which is
# most of the cost). `tests/test_plan.py` checks that the merged shards equal the whole-program plan.
CLOUD_MODULES = {"aws": "infra.aws.stack", "gcp": "infra.gcp.stack"}
SHARDED_OUT = "[planned in the other shard]"


@contextmanager
def _only(cloud: str | None) -> Iterator[None]:
    if cloud is None:
        yield
        return
    stubbed = [module for other, module in CLOUD_MODULES.items() if other != cloud]
    saved = {name: sys.modules.get(name) for name in stubbed}
    for name in stubbed:
        stub = types.ModuleType(name)
        stub.build = lambda settings, project: SHARDED_OUT  # type: ignore[attr-defined]
        sys.modules[name] = stub
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def plan_stack(root: Path, stack: str, only: str | None = None) -> Plan:
    """Plan one stack (or, with `only`, one cloud's shard of it).

    Bad settings raise `SettingsError` (file, key path) before any resource is built.
    """
    started = time.perf_counter()
    settings = load_stack(root, stack)
    project = project_name(root)
    raw = YAML(typ="safe").load(stack_file(root, stack).read_text())["config"]
    region = settings.aws.region if settings.aws else (settings.gcp.region if settings.gcp else "local")
    monitor = RecordingMonitor(PlanMocks(region))
    try:
        previous_loop: asyncio.AbstractEventLoop | None = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        previous_loop = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
        pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
        runtime_config.set_all_config(engine_config(raw))
        with _environ("MLOPS_ROOT", str(root)), _only(only):
            try:
                runpy.run_path(str(program()), run_name="__main__")
                loop.run_until_complete(wait_for_rpcs())
                outputs = loop.run_until_complete(_resolve(runtime_settings.get_root_resource().outputs))  # type: ignore[union-attr]
            except PlanError:
                raise
            except Exception as exc:
                raise PlanError(
                    f"stack {stack}: the program failed under the offline plan: {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        runtime_config.set_all_config({})
        runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
        loop.close()
        asyncio.set_event_loop(previous_loop)
    return Plan(
        project=project,
        stack=stack,
        environment=settings.environment.value,
        clouds=[cloud.value for cloud in settings.clouds],
        resources=monitor.registrations,
        outputs=outputs,
        seconds=round(time.perf_counter() - started, 3),
        assumptions=Assumptions.from_settings(settings).model_dump(mode="json"),
    )


async def _resolve(value: Any) -> Any:
    """Stack outputs as plain JSON, secret values masked (a plan never prints a kubeconfig or a password)."""
    if isinstance(value, pulumi.Output):
        if await value.is_secret():
            return SECRET
        return await _resolve(await value.future())
    if isinstance(value, dict):
        return {key: await _resolve(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [await _resolve(item) for item in value]
    return value


def merge(shards: list[Plan]) -> Plan:
    """One stack's plan from its cloud shards: every shard's resources, each cloud's outputs from its own shard."""
    first = shards[0]
    outputs = {key: value for key, value in first.outputs.items()}
    for shard in shards:
        for key, value in shard.outputs.items():
            if value != SHARDED_OUT:
                outputs[key] = value
    return Plan(
        project=first.project,
        stack=first.stack,
        environment=first.environment,
        clouds=first.clouds,
        resources=[resource for shard in shards for resource in shard.resources],
        outputs=outputs,
        seconds=max(shard.seconds for shard in shards),
        assumptions=first.assumptions,
    )


Unit = tuple[int, Path, str, str | None]  # (target index, root, stack, cloud shard or None)


def _plan_units(units: list[Unit]) -> list[tuple[int, Plan]]:
    return [(index, plan_stack(root, stack, only)) for index, root, stack, only in units]


def plan_stacks(root: Path, stacks: list[str], *, parallel: bool = True, progress: Any = None) -> list[Plan]:
    """Plan several stacks of one repository (see `plan_targets`)."""
    return plan_targets([(root, stack) for stack in stacks], parallel=parallel, progress=progress)


def plan_targets(targets: list[tuple[Path, str]], *, parallel: bool = True, progress: Any = None) -> list[Plan]:
    """Plan (root, stack) pairs, e.g. a stack as it is and as a base commit had it. With two clouds and
    `parallel`, the GCP shards run in a forked process while this process plans the rest (two cores:
    wall time is about the larger half, and each process loads one cloud's SDK once)."""
    say = progress or (lambda message: None)
    # Validate every stack file first: a bad one fails before seconds of planning.
    clouds = [[c.value for c in load_stack(root, stack).clouds] for root, stack in targets]
    here: list[Unit] = []
    there: list[Unit] = []
    for index, (root, stack) in enumerate(targets):
        if parallel and len(clouds[index]) == 2:
            here.append((index, root, stack, "aws"))
            there.append((index, root, stack, "gcp"))
        else:
            here.append((index, root, stack, None))
    names = ", ".join(dict.fromkeys(stack for _, stack in targets))
    say(f"planning {names} under the mock runtime" + (" (AWS and GCP shards in parallel)" if there else ""))
    # Loading the cloud SDKs creates a few hundred thousand class objects; the cyclic GC would walk
    # them again and again while they load (about a second). Nothing here builds garbage cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if there and "fork" in multiprocessing.get_all_start_methods():
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
                remote = pool.submit(_plan_units, there)
                shards = _plan_units(here) + remote.result()
        else:
            shards = _plan_units(here + there)
    finally:
        if gc_was_enabled:
            gc.enable()
    plans = []
    for index, (_, stack) in enumerate(targets):
        plans.append(merge([plan for shard_index, plan in shards if shard_index == index]))
        say(f"planned {stack}: {plans[-1].to_json()['resource_count']} resources")
    return plans

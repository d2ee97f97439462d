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
import importlib
import json
import multiprocessing
import os
import runpy
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import wait_for_rpcs
from ruamel.yaml import YAML

import infra
from infra.config import load_stack, project_name, stack_file
from infra.pricing.assumptions import Assumptions
from pipelines.plan.graph import Plan, PlanError
from pipelines.plan.mocks import SECRET, PlanMocks, RecordingMonitor


def program() -> Path:
    """The Pulumi program (Pulumi.yaml: `main: infra/`) of the `infra` package imported now: this
    checkout's, or another ref's while `pipelines.plan.at_ref.program_of` stands it in. Stack files may
    come from another root (tests)."""
    package = importlib.import_module("infra")
    return Path(package.__file__ or infra.__file__).parent / "__main__.py"


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
# most of the cost). `tests/plan/test_plan.py` checks that the merged shards equal the whole-program plan.
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
        _forget_pending_outputs()
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
        _forget_pending_outputs()
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


def _forget_pending_outputs() -> None:
    """Drop the output tasks another use of the runtime in this process left behind. The SDK keeps them
    in one process-wide set that `set_mocks` does not reset; they belong to another event loop, so
    `wait_for_rpcs` on ours would wait for them forever (a plan after `set_mocks` elsewhere hung)."""
    with runtime_settings.SETTINGS.lock:
        runtime_settings.SETTINGS.outputs.clear()


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

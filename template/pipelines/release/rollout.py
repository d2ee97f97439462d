"""`mlops rollout-status`: wait for serving's canary rollout in an environment to finish, and fail if
its analysis aborted it, so that the deploy workflow reverts the pin as a rollback does.

It reads the `Rollout` object (`kubectl get rollout serving -o json`) on each of the environment's
clusters: the kubeconfig is the stack's output (`pulumi stack output <cloud> --show-secrets`), or the
local stack's `local_cluster` settings. A rollout is
- done when it is Healthy at its current generation and its stable pods are the new revision;
- failed when it was aborted (a failed analysis, `progressDeadlineAbort`) or is Degraded, or is paused
  on an inconclusive analysis (someone has to look);
- otherwise progressing: the step it is at is reported until `timeout`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BadInput, CheckFailed, EnvironmentProblem
from infra.config import load_stack, project_name
from infra.k8s.apps import SERVING


@dataclass(frozen=True)
class RolloutState:
    phase: str
    done: bool
    failed: bool
    message: str
    step: int | None
    steps: int

    def describe(self) -> str:
        where = f"step {self.step}/{self.steps}" if self.step is not None else "no step"
        return f"{self.phase} ({where})" + (f": {self.message}" if self.message else "")


def state_of(rollout: dict[str, Any]) -> RolloutState:
    """The verdict on one Rollout object, from its status (as Argo Rollouts v1.9 writes it)."""
    status = rollout.get("status") or {}
    steps = len(((rollout.get("spec") or {}).get("strategy") or {}).get("canary", {}).get("steps") or [])
    phase = str(status.get("phase") or "Progressing")
    message = str(status.get("message") or "")
    step = status.get("currentStepIndex")
    current = str((rollout.get("metadata") or {}).get("generation", ""))
    observed = str(status.get("observedGeneration", ""))
    paused = [str(c.get("reason")) for c in status.get("pauseConditions") or []]
    if status.get("abort") or phase == "Degraded":
        return RolloutState(phase if phase == "Degraded" else "Aborted", False, True, message, step, steps)
    if "InconclusiveAnalysis" in paused:
        return RolloutState("Paused", False, True, "an analysis was inconclusive: " + message, step, steps)
    done = (
        phase == "Healthy"
        and observed == current
        and status.get("stableRS") is not None
        and status.get("stableRS") == status.get("currentPodHash")
    )
    return RolloutState(phase, done, False, message, step, steps)


def _kubeconfigs(root: Path, environment: str) -> Iterator[tuple[str, list[str]]]:
    """(cluster, kubectl arguments that reach it) for each cluster of `environment`."""
    settings = load_stack(root, environment)
    if settings.local_cluster is not None:
        cluster = settings.local_cluster
        arguments = ["--kubeconfig", os.path.expanduser(cluster.kubeconfig)]
        yield "local", arguments + (["--context", cluster.context] if cluster.context else [])
        return
    for cloud in settings.clouds:
        yield cloud.value, ["--kubeconfig", f"@pulumi:{cloud.value}"]


@contextmanager
def _materialised(arguments: list[str], environment: str, pulumi: str) -> Iterator[list[str]]:
    """Replace `@pulumi:<cloud>` by a private file holding that cloud's kubeconfig output."""
    if not arguments[1].startswith("@pulumi:"):
        yield arguments
        return
    cloud = arguments[1].removeprefix("@pulumi:")
    output = _json_of(
        [pulumi, "stack", "output", cloud, "--json", "--show-secrets", "--stack", environment],
        f"`pulumi stack output {cloud}` for {environment}",
    )
    kubeconfig = (output or {}).get("kubeconfig")
    if not kubeconfig:
        raise EnvironmentProblem(f"the {environment} stack has no {cloud}.kubeconfig output yet: run `pulumi up` first")
    with tempfile.TemporaryDirectory(prefix="mlops-kube-") as tmp:
        path = Path(tmp) / "config"
        path.write_text(kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig))
        path.chmod(0o600)
        yield ["--kubeconfig", str(path), *arguments[2:]]


def _json_of(command: list[str], what: str) -> Any:
    """What `command` prints, as JSON; EnvironmentProblem naming `what` when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise EnvironmentProblem(f"{what} failed: {result.stderr.strip()}")
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise EnvironmentProblem(f"{what} printed no JSON: {result.stdout[:200]!r}") from None


def watch(
    root: Path,
    environment: str,
    *,
    timeout: float,
    interval: float = 10,
    kubectl: str = "kubectl",
    pulumi: str = "pulumi",
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, RolloutState]:
    """Each cluster's final state; raises CheckFailed when one failed or did not finish within `timeout`."""
    if not 1 <= timeout <= 6 * 3600 or not 0.1 <= interval <= 600:
        raise BadInput(f"--timeout must be in [1, 21600] s and --interval in [0.1, 600] s (got {timeout}, {interval})")
    for tool in (kubectl,):
        if shutil.which(tool) is None:
            raise EnvironmentProblem(f"{tool} is not installed", hint="install kubectl (GitHub's runners have it)")
    namespace = project_name(root)
    states: dict[str, RolloutState] = {}
    for cluster, arguments in _kubeconfigs(root, environment):
        with _materialised(arguments, environment, pulumi) as reach:
            states[cluster] = _follow(cluster, [kubectl, *reach], namespace, timeout, interval, progress)
    failed = {c: s for c, s in states.items() if not s.done}
    if failed:
        raise CheckFailed(
            f"serving's rollout in {environment} did not complete: "
            + "; ".join(f"{c}: {s.describe()}" for c, s in failed.items()),
            hint="the previous version keeps its traffic (an aborted rollout scales the canary away); "
            f"revert the change: `mlops rollback --env {environment}`",
        )
    return states


def _follow(  # noqa: PLR0917 -- one cluster's loop
    cluster: str, kubectl: list[str], namespace: str, timeout: float, interval: float, progress: Callable[[str], None]
) -> RolloutState:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        state = state_of(
            _json_of(
                [*kubectl, "get", "rollout", SERVING, "--namespace", namespace, "--output", "json"],
                f"{cluster}: `kubectl get rollout {SERVING}`",
            )
        )
        if state.describe() != last:
            progress(f"{cluster}: {state.describe()}")
            last = state.describe()
        if state.done or state.failed or time.monotonic() >= deadline:
            if not (state.done or state.failed):
                return RolloutState(
                    state.phase, False, True, f"not finished after {timeout:.0f} s", state.step, state.steps
                )
            return state
        time.sleep(interval)

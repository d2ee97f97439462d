"""`mlops train --env ENV --on-cluster`: a training Job on the environment's cluster, made from the deployed
`training` CronJob's template (as `kubectl create job --from=cronjob/training` makes it), followed to its end:
its status, each pod's log (a pod replaced after a spot interruption is followed too) and the MLflow run it
registered. Through the official `kubernetes` client; the kubeconfig is the stack's output (`pulumi stack
output <cloud> --show-secrets`) or the local stack's `local_cluster` settings.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from core.errors import BadInput, CheckFailed, EnvironmentProblem
from infra.config import load_stack, project_name
from infra.k8s.apps import TRAINING
from infra.k8s.training import JOB_NAME_LABEL, training_job
from infra.settings import DATASET_REFERENCE
from pipelines.release.rollout import kubeconfigs, materialised

TERMINATED = ("Succeeded", "Failed")


@dataclass
class ClusterRun:
    cluster: str
    job: str
    succeeded: bool = False
    reason: str = ""
    pods: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None  # what apps.training printed last: version, run, metrics


def job_arguments(cronjob: dict[str, Any], dataset: str | None, params: Sequence[str]) -> list[str] | None:
    """The training container's arguments with `--dataset` replaced and `--param`s added (None: as deployed)."""
    if dataset is None and not params:
        return None
    if dataset is not None and not re.match(DATASET_REFERENCE, dataset):
        raise BadInput(f"--dataset {dataset!r} is not NAME[@VERSION]", hint="e.g. diagnosis@latest or diagnosis@3")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == TRAINING]
    args = list(container.get("args") or [])
    if dataset is not None:
        if "--dataset" not in args:
            raise EnvironmentProblem("the deployed training CronJob passes no --dataset: deploy this checkout first")
        args[args.index("--dataset") + 1] = dataset
    return args + [f"--param={p}" for p in params]


def last_json(log: str) -> dict[str, Any] | None:
    """The last JSON object apps.training printed (its result) in a log, if there is one; lines written
    to stderr after it (the log mixes both streams) are skipped."""
    decoder = json.JSONDecoder()
    start = len(log)
    while (start := log.rfind("{", 0, start)) >= 0:
        if start == 0 or log[start - 1] == "\n":
            try:
                found, _ = decoder.raw_decode(log, start)
            except ValueError:
                found = None
            if isinstance(found, dict):
                return found
    return None


class JobFollower:
    """Submits one Job and follows it with the client's typed APIs (`BatchV1Api`, `CoreV1Api`)."""

    def __init__(self, api_client: Any, namespace: str, progress: Callable[[str], None], interval: float) -> None:
        from kubernetes import client  # noqa: PLC0415 -- only `--on-cluster` needs it

        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.api = api_client
        self.namespace = namespace
        self.progress = progress
        self.interval = interval

    def submit(self, name: str, dataset: str | None, params: Sequence[str]) -> None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            found = self.batch.read_namespaced_cron_job("training", self.namespace)
        except ApiException as error:
            if error.status == 404:
                raise EnvironmentProblem(
                    f"no training CronJob in namespace {self.namespace}",
                    hint="pin the training image (the images workflow) and deploy the stack",
                ) from None
            raise EnvironmentProblem(f"reading the training CronJob: {error.status} {error.reason}") from None
        cronjob = self.api.sanitize_for_serialization(found)
        job = training_job(cronjob, name, job_arguments(cronjob, dataset, params))
        try:
            self.batch.create_namespaced_job(self.namespace, cast(Any, job))  # a plain manifest, as kubectl sends
        except ApiException as error:
            raise EnvironmentProblem(f"creating the Job {name}: {error.status} {error.reason}") from None
        self.progress(f"submitted Job {self.namespace}/{name}")

    def follow(self, run: ClusterRun, deadline: float) -> ClusterRun:
        followed: set[str] = set()
        while True:
            for pod in self._pods(run.job):
                name, phase = pod.metadata.name, pod.status.phase
                if name not in followed and phase in ("Running", *TERMINATED):
                    followed.add(name)
                    run.pods.append(name)
                    self.progress(f"pod {name}: {phase}; its log follows")
                    log = self._log(name)
                    run.result = last_json(log) or run.result
            status = self.batch.read_namespaced_job_status(run.job, self.namespace).status
            found = (status.conditions if status is not None else None) or []
            conditions = {c.type: c for c in found if c.status == "True"}
            if "Complete" in conditions:
                run.succeeded = True
                return run
            if "Failed" in conditions:
                failed = conditions["Failed"]
                run.reason = f"{failed.reason}: {failed.message}" if failed.message else str(failed.reason)
                return run
            if time.monotonic() > deadline:
                run.reason = "still running at --timeout (the Job goes on; `kubectl get job` follows it)"
                return run
            time.sleep(self.interval)

    def _pods(self, job: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}").items
        return sorted(pods, key=lambda p: (p.metadata.creation_timestamp is None, p.metadata.creation_timestamp))

    def _log(self, pod: str) -> str:
        """The pod's log, streamed line by line as the container writes it, until it ends."""
        stream: Any = self.core.read_namespaced_pod_log(
            pod, self.namespace, container=TRAINING, follow=True, _preload_content=False
        )  # the raw response (urllib3), read as it arrives
        lines: list[str] = []
        try:
            for raw in stream.stream(decode_content=True):
                for line in raw.decode(errors="replace").splitlines():
                    lines.append(line)
                    self.progress(f"  {line}")
        finally:
            stream.release_conn()
        return "\n".join(lines)


def run_on_cluster(
    root: Path,
    environment: str,
    *,
    dataset: str | None = None,
    params: Sequence[str] = (),
    cloud: str | None = None,
    timeout: float = 3600,
    interval: float = 5,
    progress: Callable[[str], None] = lambda _: None,
    pulumi: str = "pulumi",
    job_name: str | None = None,
) -> ClusterRun:
    """Submit a training Job on one cluster of `environment` and follow it; CheckFailed when it fails."""
    if not 10 <= timeout <= 24 * 3600:
        raise BadInput(f"--timeout must be in [10, 86400] s (got {timeout})")
    settings = load_stack(root, environment)
    clusters = dict(kubeconfigs(root, environment))
    if cloud is None and len(clusters) > 1:
        raise BadInput(f"the {environment} stack has clusters on {', '.join(clusters)}: pick one with --cloud")
    chosen = cloud or next(iter(clusters))
    if chosen not in clusters:
        raise BadInput(f"--cloud {chosen}: the {environment} stack has no cluster there ({', '.join(clusters)})")
    if settings.images.training is None:
        raise EnvironmentProblem(
            f"the {environment} stack pins no training image (images.training), so it deploys no training CronJob",
            hint="run the images workflow for this environment and merge its pull request",
        )
    from kubernetes import config  # noqa: PLC0415

    name = job_name or f"training-manual-{int(time.time())}"
    namespace = project_name(root)
    with materialised(clusters[chosen], environment, pulumi) as arguments:
        options = dict(zip(arguments[::2], arguments[1::2], strict=True))
        api_client = config.new_client_from_config(
            config_file=options["--kubeconfig"], context=options.get("--context")
        )
        with api_client:
            follower = JobFollower(api_client, namespace, progress, interval)
            follower.submit(name, dataset, params)
            run = follower.follow(ClusterRun(chosen, name), time.monotonic() + timeout)
    if not run.succeeded:
        raise CheckFailed(f"training Job {namespace}/{name} on {chosen} did not succeed: {run.reason}")
    return run

"""`mlops train`: train the reference model and register a new version in the dev registry.

    mlops train                                   # the latest version of the dataset named like the model
    mlops train --dataset diagnosis@latest        # a dataset version (`mlops data add`), its lineage logged
    mlops train --dataset diagnosis@3 --param regularization_c=0.5 --param test_size=0.3
    mlops train --env dev --on-cluster            # a Job from the deployed training CronJob, followed to its end

Without --dataset, as `mlops local up` does, it trains on the latest version of the dataset named like the
model in the dev bucket (the bundled data is added as its first version); with --tracking-uri or --store and
no --dataset, on the bundled data, unversioned. With the local environment up nothing needs setting by hand:
the tracking server, the object store the artifacts go to and the dataset store (the dev bucket) are read
from its state. `--tracking-uri` and `--store` (or MLOPS_DATA_STORE) name others; their credentials come
from the usual chains. `--on-cluster` trains on the environment's cluster instead (pipelines/training/cluster.py):
the Job runs as the stack deployed it, on the spot pool, as the training identity.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.common.options import FormatOption, repo_root
from pipelines.common.output import OutputFormat, Report, emit, progress
from pipelines.data.sources import STORE_VARIABLE, local_store_uri
from pipelines.local.commands import environment


def train_command(
    *,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow server (default: the local environment's).")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="NAME[@VERSION] of a dataset version (default: the bundled data).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help=f"The dataset store: s3://…, gs://…, a path (default {STORE_VARIABLE}, else the local dev bucket)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE: a training setting (repeatable).")
    ] = None,
    env_name: Annotated[
        str | None, typer.Option("--env", "-e", help="With --on-cluster: the environment whose cluster trains.")
    ] = None,
    on_cluster: Annotated[
        bool, typer.Option("--on-cluster", help="Submit a Job from the deployed training CronJob and follow it.")
    ] = False,
    cloud: Annotated[str | None, typer.Option(help="With --on-cluster: which cloud's cluster (aws, gcp).")] = None,
    timeout: Annotated[float, typer.Option(help="With --on-cluster: seconds to follow the Job.")] = 3600,
    reason: Annotated[
        str | None, typer.Option(help="Why it retrains: the new version's `retrain_reason` tag (the drift workflow).")
    ] = None,
    open_pr: Annotated[
        bool, typer.Option("--open-pr", help="With --on-cluster: open the pull request that pins the new version.")
    ] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Train the reference model and register a new version in the dev registry (or on a cluster)."""
    import os  # noqa: PLC0415

    if on_cluster or env_name or cloud or reason or open_pr:
        _on_cluster(
            env_name,
            on_cluster=on_cluster,
            cloud=cloud,
            timeout=timeout,
            dataset=dataset,
            params=param or [],
            local_only=(tracking_uri, store),
            reason=reason,
            open_pr=open_pr,
            fmt=fmt,
        )
        return

    from apps.training.datasets import latest_or_bundled, load  # noqa: PLC0415
    from apps.training.train import TrainingConfig, git_sha, train, with_params  # noqa: PLC0415
    from core.registry import registered_name  # noqa: PLC0415

    config = with_params(TrainingConfig(), param or [])  # checked before anything is read or started
    env = environment()
    uri = tracking_uri or env.tracking_uri()
    data_store = store or os.environ.get(STORE_VARIABLE)
    local = tracking_uri is None
    if local:
        env._ensure_experiment(uri)
        local_bucket = local_store_uri(env, "dev")  # and this process's S3 clients reach the local store
    if dataset:
        data = load(dataset, data_store or (local_bucket if local else None), git_sha(), progress)
    elif local and not data_store:  # as `mlops local up` trains: the dataset named like the model
        data = latest_or_bundled(local_bucket, env.model, git_sha(), progress)
    else:
        data = None  # the bundled data, unversioned
    result = train(uri, registered_name("dev", env.model), config, experiment="training", dataset=data)
    lineage = f" from {data.source.ref} ({data.source.short}) via {data.features.ref}" if data else ""
    emit(
        Report(
            f"Trained {result.registered_model} version {result.version}{lineage} (run {result.run_id})",
            ["metric", "value"],
            [[k, round(v, 4)] for k, v in sorted(result.metrics.items())],
            data={
                "registered_model": result.registered_model,
                "version": result.version,
                "run_id": result.run_id,
                "metrics": result.metrics,
                "lineage": data.tags() if data else None,
            },
        ),
        fmt,
    )


def _on_cluster(
    env_name: str | None,
    *,
    on_cluster: bool,
    cloud: str | None,
    timeout: float,
    dataset: str | None,
    params: list[str],
    local_only: tuple[str | None, str | None],
    reason: str | None,
    open_pr: bool,
    fmt: OutputFormat,
) -> None:
    from apps.training.train import TrainingConfig, with_params  # noqa: PLC0415
    from core.errors import BadInput  # noqa: PLC0415
    from core.registry import client_for  # noqa: PLC0415
    from infra.config import list_stacks  # noqa: PLC0415
    from pipelines.release.promote import configured_registries  # noqa: PLC0415
    from pipelines.training.cluster import run_on_cluster  # noqa: PLC0415

    root = repo_root()
    if not on_cluster:
        raise BadInput("--env, --cloud, --reason and --open-pr are for training on a cluster: add --on-cluster")
    if env_name is None or env_name not in list_stacks(root):
        raise BadInput(f"--on-cluster needs --env, one of: {', '.join(list_stacks(root))}")
    if any(local_only):
        raise BadInput("--tracking-uri and --store are the stack's own on a cluster: drop them with --on-cluster")
    with_params(TrainingConfig(), params)  # checked here, before a Job is made
    registry = configured_registries(root).uri(env_name) if reason or open_pr else None  # before the Job, too
    run = run_on_cluster(
        root, env_name, dataset=dataset, params=params, cloud=cloud, timeout=timeout, progress=progress
    )
    result = run.result or {}
    if registry is not None and reason and result.get("version"):
        client_for(registry).set_model_version_tag(
            str(result["registered_model"]), str(result["version"]), "retrain_reason", reason
        )
    opened = None
    if open_pr and result.get("version"):
        from infra.config import load_stack  # noqa: PLC0415
        from pipelines.release.promote import request_promotion  # noqa: PLC0415

        model = load_stack(root, env_name).serving.model.name
        opened = request_promotion(root, model, int(result["version"]), env_name)
    registered = f"{result.get('registered_model', '?')} version {result.get('version', '?')}"
    registered += f" (run {result.get('run_id', '?')})"
    emit(
        Report(
            f"Training Job {run.job} on {run.cluster} ({env_name}) succeeded: {registered}",
            ["metric", "value"],
            [[k, round(float(v), 4)] for k, v in sorted((result.get("metrics") or {}).items())],
            data={"job": run.job, "cluster": run.cluster, "pods": run.pods, **result},
            footer=f"next: review and merge {opened.pull_request or opened.branch} (pins it in {env_name})"
            if opened
            else None,
        ),
        fmt,
    )

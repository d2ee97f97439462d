"""`mlops train`: train the reference model and register a new version in the dev registry.

    mlops train                                   # the latest version of the dataset named like the model
    mlops train --dataset diagnosis@latest        # a dataset version (`mlops data add`), its lineage logged
    mlops train --dataset diagnosis@3 --param regularization_c=0.5 --param test_size=0.3

Without --dataset, as `mlops local up` does, it trains on the latest version of the dataset named like the
model in the dev bucket (the bundled data is added as its first version); with --tracking-uri or --store and
no --dataset, on the bundled data, unversioned. With the local environment up nothing needs setting by hand:
the tracking server, the object store the artifacts go to and the dataset store (the dev bucket) are read
from its state. `--tracking-uri` and `--store` (or MLOPS_DATA_STORE) name others; their credentials come
from the usual chains.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.common.options import FormatOption
from pipelines.common.output import OutputFormat, Report, emit, progress
from pipelines.data.sources import STORE_VARIABLE, local_store_uri
from pipelines.local.commands import environment


def train_command(
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
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Train the reference model and register a new version in the dev registry."""
    import os  # noqa: PLC0415

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

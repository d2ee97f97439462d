"""`mlops train`: train the reference model and register a new version in the dev registry."""

from __future__ import annotations

from typing import Annotated

import typer

from pipelines.common.options import FormatOption
from pipelines.common.output import OutputFormat, Report, emit
from pipelines.local.commands import environment


def train_command(
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow server (default: the local environment's).")] = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Train the reference model and register a new version in the dev registry."""
    from apps.training.train import train  # noqa: PLC0415
    from core.registry import registered_name  # noqa: PLC0415

    env = environment()
    uri = tracking_uri or env.tracking_uri()
    if tracking_uri is None:
        env._ensure_experiment(uri)
    result = train(uri, registered_name("dev", env.model), experiment="training")
    emit(
        Report(
            f"Trained {result.registered_model} version {result.version} (run {result.run_id})",
            ["metric", "value"],
            [[k, round(v, 4)] for k, v in sorted(result.metrics.items())],
            data={
                "registered_model": result.registered_model,
                "version": result.version,
                "run_id": result.run_id,
                "metrics": result.metrics,
            },
        ),
        fmt,
    )

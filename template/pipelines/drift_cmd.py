"""`mlops drift --env ENV`: has what an environment serves drifted from its training data?

The serving app keeps a uniform sample of recent inputs (`POST /monitoring/sample`); the training
reference travels in the served version's artifacts (`drift_reference.npz`). This command fetches
both, compares them feature by feature (`apps/serving/drift.py`: KS test and PSI) and reports.

    mlops drift --env local                        # the local environment (`mlops local up`)
    mlops drift --env prod --serving-url URL       # or MLOPS_SERVING_PROD; registry: MLOPS_REGISTRY_PROD
    mlops drift --env prod --record --retrain      # log a drift run; past the threshold, train a new
                                                   # dev candidate (it then goes through the promotion gates)

Exit status: 0, or 1 with `--fail-on-drift` when the sample drifted.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from infra.config import load_stack
from infra.settings import Environment
from pipelines.config_cmd import FormatOption, repo_root
from pipelines.errors import EXIT_CHECK_FAILED, BadInput, EnvironmentProblem
from pipelines.output import OutputFormat, Report, console, emit, progress

ENVIRONMENTS = [e.value for e in Environment]


@dataclass
class DriftCheck:
    environment: str
    serving_url: str
    registry_uri: str
    model: dict[str, Any]
    report: Any  # apps.serving.drift.DriftReport
    recorded_run: str | None = None
    retrained_version: int | None = None
    retrained_model: str | None = None
    next_steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "serving_url": self.serving_url,
            "model": self.model,
            **self.report.as_dict(),
            "recorded_run": self.recorded_run,
            "retrained": (
                {"model": self.retrained_model, "version": self.retrained_version}
                if self.retrained_version is not None
                else None
            ),
            "next_steps": self.next_steps,
        }


def endpoints(root: Path, environment: str, serving_url: str | None, registry_uri: str | None) -> tuple[str, str]:
    """(serving URL, registry URI): from the options, `MLOPS_SERVING_<ENV>`/`MLOPS_REGISTRY_<ENV>`, or the
    running local environment, which serves the prod model from its own registry."""
    serving = serving_url or os.environ.get(f"MLOPS_SERVING_{environment.upper()}")
    registry = registry_uri or os.environ.get(f"MLOPS_REGISTRY_{environment.upper()}")
    if serving and registry:
        return serving.rstrip("/"), registry
    if environment == Environment.LOCAL:
        from pipelines.local_cmd import environment as local_environment  # noqa: PLC0415

        local = local_environment()
        running = local.running()
        if "serving" not in running:
            raise EnvironmentProblem("the local serving app is not running", hint="start it with `mlops local up`")
        # The local registries set the object-store client variables the artifact download needs.
        return serving or running["serving"].url, registry or local.registries().uri("prod")
    missing = [
        name
        for name, value in (
            (f"MLOPS_SERVING_{environment.upper()}", serving),
            (f"MLOPS_REGISTRY_{environment.upper()}", registry),
        )
        if not value
    ]
    raise BadInput(
        f"--env {environment}: no {' and no '.join(missing)}",
        hint="pass --serving-url and --registry-uri, or set those variables (the stack outputs name both URLs)",
    )


def fetch_sample(serving_url: str) -> dict[str, Any]:
    try:
        response = httpx.post(f"{serving_url}/monitoring/sample", json={}, timeout=30)
    except httpx.HTTPError as exc:
        raise EnvironmentProblem(
            f"the serving app at {serving_url} did not answer: {type(exc).__name__}: {exc}"
        ) from None
    if response.status_code != 200:
        raise EnvironmentProblem(
            f"{serving_url}/monitoring/sample answered HTTP {response.status_code}: {response.text[:300]}"
        )
    body = response.json()
    if not isinstance(body, dict) or not {"model", "rows", "feature_names"} <= body.keys():
        raise EnvironmentProblem(f"{serving_url}/monitoring/sample did not return a sample (keys: {sorted(body)})")
    return body


def reference_of(registry_uri: str, name: str, registry_version: int) -> Any:
    from apps.serving.drift import REFERENCE_FILE, Reference  # noqa: PLC0415
    from pipelines.registry import download_version  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = download_version(registry_uri, name, registry_version, Path(tmp))
        path = model_dir / REFERENCE_FILE
        if not path.is_file():
            raise BadInput(
                f"{name} version {registry_version} has no {REFERENCE_FILE} in its artifacts",
                hint="it was trained before drift references were logged; train and promote a new version",
            )
        return Reference.load(path)


def check(
    root: Path,
    environment: str,
    *,
    serving_url: str | None = None,
    registry_uri: str | None = None,
    alpha: float | None = None,
    threshold: float | None = None,
) -> DriftCheck:
    import numpy as np  # noqa: PLC0415

    from apps.serving.drift import compare  # noqa: PLC0415

    if environment not in ENVIRONMENTS:
        raise BadInput(f"--env: {environment!r} is not one of {', '.join(ENVIRONMENTS)}")
    monitoring = load_stack(root, environment).monitoring
    alpha = monitoring.drift_alpha if alpha is None else alpha
    threshold = monitoring.drift_threshold if threshold is None else threshold
    if not 0 < alpha < 1:
        raise BadInput(f"--alpha: {alpha} must be between 0 and 1")
    if not 0 < threshold <= 1:
        raise BadInput(f"--threshold: {threshold} must be in (0, 1]")
    serving, registry = endpoints(root, environment, serving_url, registry_uri)
    progress(f"fetching the input sample from {serving}")
    sample = fetch_sample(serving)
    model = sample["model"]
    progress(f"fetching the drift reference of {model['name']} version {model['registry_version']} from {registry}")
    reference = reference_of(registry, model["name"], int(model["registry_version"]))
    rows = np.asarray(sample["rows"], dtype=np.float64).reshape(-1, len(reference.names))
    report = compare(reference, rows, alpha=alpha, threshold=threshold)
    return DriftCheck(environment, serving, registry, {**model, "rows_seen": sample.get("rows_seen")}, report)


def record(result: DriftCheck) -> str:
    """Log the check as an MLflow run (experiment `drift`) in the environment's registry: the audit trail."""
    from pipelines.registry import client_for  # noqa: PLC0415

    client = client_for(result.registry_uri)
    experiment = client.get_experiment_by_name("drift")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("drift")
    run = client.create_run(
        experiment_id,
        run_name=f"drift-{result.environment}-v{result.model['model_version']}",
        tags={
            "environment": result.environment,
            "model": result.model["name"],
            "model_version": str(result.model["model_version"]),
            "drifted": str(result.report.drifted).lower(),
            "drifted_features": ",".join(result.report.drifted_features)[:5000],
        },
    )
    client.log_metric(run.info.run_id, "drift_share", result.report.share)
    client.log_metric(run.info.run_id, "sample_rows", result.report.sample_rows)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def retrain(root: Path, result: DriftCheck) -> int:
    """Train a new version into the dev registry, tagged with why; it is promoted like any other."""
    from apps.training.train import train  # noqa: PLC0415
    from pipelines.registry import client_for, registered_name  # noqa: PLC0415
    from pipelines.release import configured_registries  # noqa: PLC0415

    model = load_stack(root, "dev").serving.model.name
    dev = configured_registries(root).uri("dev") if result.environment != Environment.LOCAL else result.registry_uri
    progress(f"drift past the threshold: training a new candidate in the dev registry ({dev})")
    trained = train(dev, registered_name("dev", model), experiment="training")
    served = f"{result.model['name']} v{result.model['model_version']}"
    reason = f"input drift in {result.environment}: {result.report.share:.0%} of features ({served})"
    client_for(dev).set_model_version_tag(registered_name("dev", model), str(trained.version), "retrain_reason", reason)
    result.retrained_model = model
    result.next_steps.append(f"mlops promote {model} --version {trained.version} --to dev")
    return trained.version


def drift(
    env: Annotated[str, typer.Option("--env", "-e", help="Environment: local, dev, staging or prod.")],
    *,
    serving_url: Annotated[str | None, typer.Option(help="The serving app (default MLOPS_SERVING_<ENV>).")] = None,
    registry_uri: Annotated[
        str | None, typer.Option(help="The environment's MLflow (default MLOPS_REGISTRY_<ENV>).")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="KS p-value below which a feature drifted (stack default).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Share of drifted features that is drift (stack default).")
    ] = None,
    record_run: Annotated[
        bool, typer.Option("--record", help="Log the check as a run in the `drift` experiment.")
    ] = False,
    retrain_on_drift: Annotated[bool, typer.Option("--retrain", help="On drift, train a new dev candidate.")] = False,
    open_pr: Annotated[
        bool, typer.Option("--open-pr", help="With --retrain: open the pull request that pins the candidate in dev.")
    ] = False,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 1 when the sample drifted.")] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Compare the inputs ENV has served with the served version's training data, feature by feature."""
    root = repo_root()
    result = check(root, env, serving_url=serving_url, registry_uri=registry_uri, alpha=alpha, threshold=threshold)
    report = result.report
    if record_run:
        result.recorded_run = record(result)
    if open_pr and not retrain_on_drift:
        raise BadInput("--open-pr needs --retrain (it opens the pull request for the retrained version)")
    if retrain_on_drift and report.drifted:
        result.retrained_version = retrain(root, result)
        if open_pr:
            from pipelines.release import request_promotion  # noqa: PLC0415

            opened = request_promotion(root, str(result.retrained_model), result.retrained_version, "dev")
            result.next_steps = [f"review and merge {opened.pull_request or opened.branch} (pins it in dev)"]
    verdict = (
        f"not enough data: {report.sample_rows} rows sampled, at least 50 needed"
        if not report.enough_data
        else f"{'DRIFT' if report.drifted else 'no drift'}: {len(report.drifted_features)} of {len(report.features)} "
        f"features ({report.share:.0%}; threshold {report.threshold:.0%}, KS p < {report.alpha:g})"
    )
    footer = [
        f"{result.model['name']} v{result.model['model_version']} in {env}: {verdict}; "
        f"{report.sample_rows} sampled rows vs {report.reference_rows} reference rows"
    ]
    if result.recorded_run:
        footer.append(f"recorded as run {result.recorded_run} (experiment `drift`)")
    if result.retrained_version is not None:
        footer.append(f"trained dev candidate version {result.retrained_version}")
    footer += [f"next: {step}" for step in result.next_steps]
    rows = [
        [
            f.feature,
            f"{f.ks_statistic:.3f}",
            f"{f.p_value:.2g}",
            f"{f.psi:.3f}",
            f"{f.reference_mean:.4g}",
            f"{f.current_mean:.4g}",
            "DRIFT" if f.drifted else "ok",
        ]
        for f in sorted(report.features, key=lambda f: f.p_value)
    ]
    title = f"Input drift: {env}"
    columns = ["feature", "KS", "p-value", "PSI", "reference mean", "served mean", "verdict"]
    if fmt is OutputFormat.TABLE:
        emit(Report(title, columns, rows), fmt)
        for line in footer:
            console.print(line)
    elif fmt is OutputFormat.MARKDOWN:
        sys.stdout.write(f"### {title}\n\n" + "\n".join(footer) + "\n\n")
        emit(Report(title, columns, rows), fmt)
    else:
        emit(Report(title, columns, data=result.as_dict()), fmt)
    if fail_on_drift and report.drifted:
        raise typer.Exit(EXIT_CHECK_FAILED)

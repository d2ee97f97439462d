"""Has what an environment serves drifted from its training data?

The serving app keeps a uniform sample of recent inputs (`POST /monitoring/sample`); the training
reference travels with the model version's artifacts. `check` compares the two, `record` writes the
result to the environment's registry, `retrain` trains a dev candidate and opens its pull request.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.errors import BadInput, EnvironmentProblem
from infra.config import load_stack
from infra.settings import Environment
from pipelines.common.output import progress

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
        from pipelines.local.commands import environment as local_environment  # noqa: PLC0415

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
    from core.registry import download_version  # noqa: PLC0415

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
    from core.registry import client_for  # noqa: PLC0415

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
    from core.registry import client_for, registered_name  # noqa: PLC0415
    from pipelines.release.promote import configured_registries  # noqa: PLC0415

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

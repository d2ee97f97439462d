"""Train the reference model, evaluate it on held-out data, log everything, register a new version.

    python -m apps.training --tracking-uri http://127.0.0.1:5000 --registered-model dev.diagnosis \
        [--dataset diagnosis@latest --store s3://BUCKET] [--config FILE.json] [--param regularization_c=0.5]

With `--dataset` it trains on a dataset version (`mlops data add`; apps/training/datasets.py) and logs it,
and the feature set computed from it, as the run's MLflow dataset inputs; without, on the bundled data.

What is logged is what the promotion policies check: metrics (accuracy, ROC AUC, F1, per-group
metrics and their gap), the signature and an input example, explicit pip requirements (no slow
inference), a model card, a global explanation (permutation importance), and lineage tags (git sha,
dataset name, version and SHA-256, feature code SHA, training config). The model's artifacts also hold
a sample of the training features, the reference that drift is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from apps.serving.drift import Reference
from apps.training import explain
from apps.training.data import GROUP_FEATURE, Split, split
from apps.training.datasets import TrainingData, binary_target, load
from core.errors import BadInput, MlopsError


class TrainingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    test_size: float = Field(default=0.25, gt=0.05, lt=0.9)
    random_state: int = 42
    regularization_c: float = Field(default=1.0, gt=0)
    max_iter: int = Field(default=2000, ge=10)
    group_feature: str = Field(default=GROUP_FEATURE, min_length=1)  # the fairness groups: above/below its median


def with_params(config: TrainingConfig, pairs: Sequence[str]) -> TrainingConfig:
    """`config` with `KEY=VALUE` overrides (`--param`), each key a TrainingConfig field, each value validated."""
    changes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"--param {pair!r} is not KEY=VALUE")
        if key not in TrainingConfig.model_fields:
            raise BadInput(f"--param {key}: not a training setting", hint=", ".join(TrainingConfig.model_fields))
        changes[key] = value
    try:
        return TrainingConfig.model_validate({**config.model_dump(), **changes})
    except ValidationError as error:
        first = error.errors()[0]
        raise BadInput(f"--param {first['loc'][0]}={changes.get(str(first['loc'][0]))!r}: {first['msg']}") from None


@dataclass(frozen=True)
class TrainingResult:
    registered_model: str
    version: int
    run_id: str
    metrics: dict[str, float]


def build_pipeline(config: TrainingConfig) -> Pipeline:
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("classify", LogisticRegression(C=config.regularization_c, max_iter=config.max_iter)),
        ]
    )


def evaluate(model: Pipeline, data: Split) -> dict[str, float]:
    """Held-out metrics, per group, and the largest gap between groups for each metric."""
    scores = model.predict_proba(data.x_test)[:, 1]
    predicted = (scores >= 0.5).astype(int)
    metrics = {
        "accuracy": float(accuracy_score(data.y_test, predicted)),
        "roc_auc": float(roc_auc_score(data.y_test, scores)),
        "f1": float(f1_score(data.y_test, predicted)),
    }
    per_group: dict[str, dict[str, float]] = {}
    for group in sorted(data.groups_test.unique()):
        mask = (data.groups_test == group).to_numpy()
        y_true, y_score, y_pred = data.y_test.to_numpy()[mask], scores[mask], predicted[mask]
        values = {
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        }
        values["roc_auc"] = float(roc_auc_score(y_true, y_score)) if len(set(y_true)) > 1 else values["accuracy"]
        per_group[group] = values
        metrics.update({f"{name}_group_{group}": value for name, value in values.items()})
    for name in ("accuracy", "roc_auc", "f1"):
        group_scores = [group_values[name] for group_values in per_group.values()]
        metrics[f"{name}_group_gap"] = max(group_scores) - min(group_scores)
    return metrics


def git_sha(cwd: Path | None = None) -> str:
    """The commit the code was trained from; `GITHUB_SHA` in CI; `unknown` outside a repository."""
    if sha := os.environ.get("GITHUB_SHA"):
        return sha
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()


def pip_requirements() -> list[str]:
    """Explicit requirements (MLflow's inference of them costs ~9 s per model)."""
    return [f"scikit-learn=={version('scikit-learn')}", f"numpy=={version('numpy')}", f"pandas=={version('pandas')}"]


def model_card(
    registered_model: str,
    config: TrainingConfig,
    metrics: dict[str, float],
    lineage: dict[str, str],
    *,
    explanation: str,
    dataset: TrainingData | None = None,
) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()))
    if dataset is None:
        data = (
            "scikit-learn's breast cancer dataset (569 rows, 30 numeric features), stratified split,\n"
            f"test size {config.test_size}. Dataset SHA-256: `{lineage['dataset_sha256']}`."
        )
    else:
        data = (
            f"Dataset `{dataset.source.ref}` ({dataset.source.rows:,} rows, SHA-256 `{dataset.source.sha256}`) in\n"
            f"`{dataset.store}`; features `{dataset.features.ref}` ({len(dataset.frame.columns) - 1} columns, SHA-256\n"
            f"`{dataset.features.sha256}`) computed by `{dataset.code.module}` (git blob `{dataset.code.sha}`);\n"
            f"stratified split, test size {config.test_size}."
        )
    return f"""# Model card: {registered_model}

## Intended use
Reference binary classifier (malignant vs. benign) that exercises the platform's lifecycle:
training, gated promotion, serving. Not for clinical use.

## Data
{data}

## Fairness groups
A proxy grouping (no demographic column exists): `{config.group_feature}` above/below the training median.
Gaps between the groups are reported as `*_group_gap` and bounded by the promotion policies.

## Held-out metrics
| metric | value |
| --- | --- |
{rows}

{explanation}
## Lineage
Git commit `{lineage["git_sha"]}`; training config `{lineage["training_config"]}`.
"""


def train(
    tracking_uri: str,
    registered_model: str,
    config: TrainingConfig | None = None,
    experiment: str = "training",
    dataset: TrainingData | None = None,
) -> TrainingResult:
    """Fit, evaluate, log and register one model version; returns the new version number."""
    import mlflow  # noqa: PLC0415 -- heavy; imported only when training
    from mlflow.models import infer_signature  # noqa: PLC0415

    from core.registry import artifact_digest_of_version, set_version_lineage  # noqa: PLC0415 -- sets MLflow env first

    config = config or TrainingConfig()
    if dataset is None:
        data = split(config.test_size, config.random_state, group_feature=config.group_feature)
    else:
        target = binary_target(dataset)
        features = dataset.frame.drop(columns=[dataset.label]).astype("float64")
        frame = (features, target)
        data = split(config.test_size, config.random_state, frame, config.group_feature, dataset.source.sha256)
    model = build_pipeline(config).fit(data.x_train, data.y_train)
    metrics = evaluate(model, data)
    importances = explain.permutation_importances(model, data.x_test, data.y_test, config.random_state)
    lineage = {
        "git_sha": git_sha(),
        "dataset_sha256": data.dataset_sha256,
        "training_config": json.dumps(config.model_dump(), sort_keys=True),
        "explanation": explain.METHOD,
        **(dataset.tags() if dataset is not None else {}),
    }
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    example = data.x_test.head(3)
    with mlflow.start_run(run_name=f"train-{registered_model}") as run:
        mlflow.log_params(config.model_dump())
        mlflow.log_metrics(metrics)
        mlflow.set_tags(lineage)
        if dataset is not None:
            _log_inputs(mlflow, dataset)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model,
        )
        with tempfile.TemporaryDirectory() as tmp:
            card = Path(tmp) / "model_card.md"
            section = explain.card_section(importances)
            card.write_text(
                model_card(registered_model, config, metrics, lineage, explanation=section, dataset=dataset)
            )
            mlflow.log_artifact(str(card))
            explained = explain.write(importances, min(len(data.x_test), explain.ROWS), Path(tmp))
            mlflow.log_artifact(str(explained), artifact_path=str(Path(explain.ARTIFACT).parent))
            # Inside the model's own artifacts, so every registry copy carries its drift reference.
            reference = Reference.of(data.x_train).save(Path(tmp))
            mlflow.MlflowClient(tracking_uri).log_model_artifact(info.model_id, str(reference))
    registered_version = int(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri)
    set_version_lineage(
        client,
        registered_model,
        registered_version,
        {
            **lineage,
            "model_version": str(registered_version),
            "source_run_id": run.info.run_id,
            "training_run_id": run.info.run_id,  # kept by every copy (source_run_id is each registry's own)
            "artifact_sha256": artifact_digest_of_version(tracking_uri, registered_model, registered_version),
        },
    )
    return TrainingResult(registered_model, registered_version, run.info.run_id, metrics)


def _log_inputs(mlflow: Any, dataset: TrainingData) -> None:
    """The dataset version and the features computed from it, as the run's MLflow dataset inputs (their
    digests are the versions' SHA-256: MLflow's own would hash every row again)."""
    for manifest, context in ((dataset.source, "source"), (dataset.features, "training")):
        frame = dataset.frame.head(0) if manifest is dataset.source else dataset.frame
        source = f"{dataset.store.rstrip('/')}/datasets/{manifest.name}/{manifest.sha256}"
        with warnings.catch_warnings():
            # MLflow hints that an integer label cannot hold missing values: `data add` refused nulls already.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
            logged = mlflow.data.from_pandas(
                frame, source=source, targets=dataset.label, name=manifest.ref, digest=manifest.sha256[:12]
            )
            mlflow.log_input(logged, context=context, tags={"sha256": manifest.sha256, "rows": str(manifest.rows)})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.training", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--registered-model", required=True)
    parser.add_argument("--dataset", help="NAME[@VERSION] in the store (default: the bundled data)")
    parser.add_argument("--store", help="the dataset store (default MLOPS_DATA_STORE)")
    parser.add_argument("--config", type=Path, help="JSON file with TrainingConfig fields")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        parser.error("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
    try:
        config = TrainingConfig.model_validate_json(args.config.read_text()) if args.config else TrainingConfig()
        config = with_params(config, args.param)
        dataset = load(args.dataset, args.store, git_sha(), _progress) if args.dataset else None
        result = train(args.tracking_uri, args.registered_model, config, dataset=dataset)
    except (OSError, ValidationError) as error:
        print(f"error: --config {args.config}: {error}", file=sys.stderr)
        return 2
    except MlopsError as error:
        print(f"error: {error.message}" + (f"\nhint: {error.hint}" if error.hint else ""), file=sys.stderr)
        return error.exit_code
    print(
        json.dumps(
            {
                "registered_model": result.registered_model,
                "version": result.version,
                "run_id": result.run_id,
                "metrics": result.metrics,
            },
            indent=2,
        )
    )
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())

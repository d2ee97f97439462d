"""Train the reference model, evaluate it on held-out data, log everything, register a new version.

    python -m apps.training.train --tracking-uri http://127.0.0.1:5000 --registered-model dev.diagnosis

What is logged is what the promotion policies check: metrics (accuracy, ROC AUC, F1, per-group
metrics and their gap), the signature and an input example, explicit pip requirements (no slow
inference), a model card, and lineage tags (git sha, dataset SHA-256, training config). The model's
artifacts also hold a sample of the training features, the reference that drift is measured against.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from apps.serving.drift import Reference
from apps.training.data import GROUP_FEATURE, Split, split


class TrainingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    test_size: float = Field(default=0.25, gt=0.05, lt=0.9)
    random_state: int = 42
    regularization_c: float = Field(default=1.0, gt=0)
    max_iter: int = Field(default=2000, ge=10)


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
    registered_model: str, config: TrainingConfig, metrics: dict[str, float], lineage: dict[str, str]
) -> str:
    rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()))
    return f"""# Model card: {registered_model}

## Intended use
Reference binary classifier (malignant vs. benign) that exercises the platform's lifecycle:
training, gated promotion, serving. Not for clinical use.

## Data
scikit-learn's breast cancer dataset (569 rows, 30 numeric features), stratified split,
test size {config.test_size}. Dataset SHA-256: `{lineage["dataset_sha256"]}`.

## Fairness groups
A proxy grouping (no demographic column exists): `{GROUP_FEATURE}` above/below the training median.
Gaps between the groups are reported as `*_group_gap` and bounded by the promotion policies.

## Held-out metrics
| metric | value |
| --- | --- |
{rows}

## Lineage
Git commit `{lineage["git_sha"]}`; training config `{lineage["training_config"]}`.
"""


def train(
    tracking_uri: str, registered_model: str, config: TrainingConfig | None = None, experiment: str = "training"
) -> TrainingResult:
    """Fit, evaluate, log and register one model version; returns the new version number."""
    import mlflow  # noqa: PLC0415 -- heavy; imported only when training
    from mlflow.models import infer_signature  # noqa: PLC0415

    from core.registry import artifact_digest_of_version, set_version_lineage  # noqa: PLC0415 -- sets MLflow env first

    config = config or TrainingConfig()
    data = split(config.test_size, config.random_state)
    model = build_pipeline(config).fit(data.x_train, data.y_train)
    metrics = evaluate(model, data)
    lineage = {
        "git_sha": git_sha(),
        "dataset_sha256": data.dataset_sha256,
        "training_config": json.dumps(config.model_dump(), sort_keys=True),
    }
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    example = data.x_test.head(3)
    with mlflow.start_run(run_name=f"train-{registered_model}") as run:
        mlflow.log_params(config.model_dump())
        mlflow.log_metrics(metrics)
        mlflow.set_tags(lineage)
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
            card.write_text(model_card(registered_model, config, metrics, lineage))
            mlflow.log_artifact(str(card))
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
            "artifact_sha256": artifact_digest_of_version(tracking_uri, registered_model, registered_version),
        },
    )
    return TrainingResult(registered_model, registered_version, run.info.run_id, metrics)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--registered-model", required=True)
    parser.add_argument("--config", type=Path, help="JSON file with TrainingConfig fields")
    args = parser.parse_args(argv)
    config = TrainingConfig.model_validate_json(args.config.read_text()) if args.config else TrainingConfig()
    result = train(args.tracking_uri, args.registered_model, config)
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


if __name__ == "__main__":
    sys.exit(main())

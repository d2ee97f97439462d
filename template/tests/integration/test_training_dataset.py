"""Training from a dataset version in the local environment, as a person runs it: `mlops data add`, then
`mlops train --dataset`, with no variable set by hand; the lineage is read back through MLflow's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow

from apps.training.features import module_name
from core.datasets.store import DatasetStore
from core.registry import client_for
from pipelines.local.environment import LocalEnvironment, UpSummary
from tests.conftest import ROOT

MLOPS = str(Path(sys.executable).parent / "mlops")


def _mlops(env: LocalEnvironment, *args: str) -> dict:
    # Only what a fresh shell has: no S3 endpoint, key or store variable (the CLI reads them from the state).
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "MLOPS_"))}
    clean |= {"MLOPS_LOCAL_HOME": str(env.home), "MLOPS_ROOT": str(ROOT)}
    result = subprocess.run(
        [MLOPS, *args, "-f", "json"], env=clean, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_training_on_a_dataset_version_records_its_lineage(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, _ = local_env
    name = env.model  # `up` added the bundled data as its first version: the same data again is that version
    added = _mlops(env, "data", "add", "--from-sklearn", "breast_cancer", "--name", name)
    trained = _mlops(env, "train", "--dataset", f"{name}@{added['version']}", "--param", "regularization_c=0.5")
    client = client_for(env.tracking_uri())
    version = client.get_model_version(trained["registered_model"], str(trained["version"]))
    tags = version.tags
    blob = subprocess.run(
        ["git", "hash-object", f"apps/training/features/{name.replace('-', '_')}.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (tags["dataset_name"], tags["dataset_version"], tags["dataset_sha256"]) == (
        name,
        str(added["version"]),
        added["sha256"],
    )
    assert tags["feature_code"] == module_name(name) and tags["feature_code_sha"] == blob
    assert tags["explanation"] == "permutation_importance"

    store = DatasetStore(added["store"])
    features = store.resolve(tags["features_dataset"])
    assert features.sha256 == tags["features_sha256"] and features.name == f"{name}-features"
    assert (features.metadata["source_sha256"], features.metadata["feature_code_sha"]) == (added["sha256"], blob)

    run = client.get_run(version.run_id)
    assert run.data.params["regularization_c"] == "0.5"
    inputs = {d.dataset.name: {t.key: t.value for t in d.tags} for d in run.inputs.dataset_inputs}
    assert inputs[f"{name}@{added['version']}"]["mlflow.data.context"] == "source"
    assert inputs[features.ref]["mlflow.data.context"] == "training"
    assert inputs[features.ref]["sha256"] == features.sha256

    explained = mlflow.artifacts.download_artifacts(
        run_id=version.run_id, artifact_path="explanation/permutation_importance.json", tracking_uri=env.tracking_uri()
    )
    importances = json.loads(Path(explained).read_text())["features"]
    assert len(importances) == 30 and importances[0]["importance_mean"] > 0
    card = Path(
        mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path="model_card.md", tracking_uri=env.tracking_uri()
        )
    ).read_text()
    assert f"`{name}@{added['version']}`" in card and "## Explanation" in card and importances[0]["feature"] in card

    shown = _mlops(env, "data", "show", f"{name}@{added['version']}")
    assert f"{trained['registered_model']} v{trained['version']}" in shown["models"]

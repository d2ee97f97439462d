"""The reference training job, without a server: data lineage, metrics, and what a run records."""

from __future__ import annotations

import importlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_breast_cancer

from apps.training.data import dataset_sha256, load_frame, split
from apps.training.explain import card_section, permutation_importances
from apps.training.features import FeatureCode, FeatureError, code_for, compute, module_name
from apps.training.train import TrainingConfig, build_pipeline, evaluate, model_card, pip_requirements, with_params
from core.errors import BadInput
from core.registry import artifact_digest
from infra.config import load_stack
from tests.conftest import ROOT


def test_dataset_digest_is_stable_and_sensitive() -> None:
    features, target = load_frame()
    assert dataset_sha256(features, target) == dataset_sha256(features.copy(), target.copy())
    changed = features.copy()
    changed.iloc[0, 0] += 1e-9
    assert dataset_sha256(changed, target) != dataset_sha256(features, target)


def test_metrics_include_groups_and_gaps() -> None:
    config = TrainingConfig()
    data = split(config.test_size, config.random_state)
    metrics = evaluate(build_pipeline(config).fit(data.x_train, data.y_train), data)
    for name in ("accuracy", "roc_auc", "f1"):
        assert 0.9 < metrics[name] <= 1
        gap = metrics[f"{name}_group_gap"]
        assert gap == pytest.approx(abs(metrics[f"{name}_group_large"] - metrics[f"{name}_group_small"]))
    assert set(data.groups_test) == {"large", "small"}


def test_training_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="test_size"):
        TrainingConfig(test_size=0.99)
    with pytest.raises(ValidationError, match="extra"):
        TrainingConfig.model_validate({"learning_rate": 1})


def test_pip_requirements_are_explicit_and_pinned() -> None:
    requirements = pip_requirements()
    assert [r.split("==")[0] for r in requirements] == ["scikit-learn", "numpy", "pandas"]
    assert all("==" in r for r in requirements)


def test_model_card_names_data_metrics_and_lineage() -> None:
    card = model_card(
        "dev.m",
        TrainingConfig(),
        {"roc_auc": 0.99},
        {"dataset_sha256": "abc", "git_sha": "123", "training_config": "{}"},
        explanation=card_section([{"feature": "mean area", "importance_mean": 0.125, "importance_std": 0.01}]),
    )
    assert "| roc_auc | 0.9900 |" in card and "`abc`" in card and "`123`" in card
    assert "## Explanation" in card and "| mean area | 0.1250 | 0.0100 |" in card


def test_params_override_settings_and_bad_ones_are_refused() -> None:
    config = with_params(TrainingConfig(), ["regularization_c=0.5", "test_size=0.3", "group_feature=mean radius"])
    assert (config.regularization_c, config.test_size, config.group_feature) == (0.5, 0.3, "mean radius")
    for pair, message in [
        ("learning_rate=1", "--param learning_rate: not a training setting"),
        ("test_size=0.99", "--param test_size='0.99': Input should be less than 0.9"),
        ("max_iter=many", "--param max_iter='many': Input should be a valid integer"),
        ("regularization_c", "--param 'regularization_c' is not KEY=VALUE"),
    ]:
        with pytest.raises(BadInput) as caught:
            with_params(config, [pair])
        assert message in caught.value.message, caught.value.message
    with pytest.raises(BadInput, match="'nope' is not a feature column"):
        split(0.25, 42, group_feature="nope")


def test_permutation_importance_ranks_the_features_the_model_uses() -> None:
    config = TrainingConfig()
    data = split(config.test_size, config.random_state)
    model = build_pipeline(config).fit(data.x_train, data.y_train)
    found = permutation_importances(model, data.x_test, data.y_test, seed=0)
    assert [f["feature"] for f in found] != list(data.x_test.columns), "sorted by importance, not by column"
    assert sorted(f["feature"] for f in found) == sorted(data.x_test.columns)
    means = [f["importance_mean"] for f in found]
    assert means == sorted(means, reverse=True) and means[0] > 0
    noise = data.x_test.assign(noise=np.random.default_rng(0).normal(size=len(data.x_test)))
    refit = build_pipeline(config).fit(
        data.x_train.assign(noise=np.random.default_rng(1).normal(size=len(data.x_train))), data.y_train
    )
    ranked = [f["feature"] for f in permutation_importances(refit, noise, data.y_test, seed=0)]
    assert ranked.index("noise") > 5, "a column of pure noise is not among the most important"


def test_feature_modules_are_found_and_their_output_checked() -> None:
    model = load_stack(ROOT, "local").serving.model.name  # the reference dataset is named like the model
    frame = load_breast_cancer(as_frame=True).frame
    code = code_for(model)
    path = ROOT / "apps" / "training" / "features" / f"{model.replace('-', '_')}.py"
    blob = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert (code.module, code.sha) == (module_name(model), blob.stdout.strip())
    computed = compute(code, frame, "target")
    columns = importlib.import_module(module_name(model)).COLUMNS
    assert list(computed.columns) == [*columns, "target"] and (computed.dtypes[:-1] == "float64").all()
    assert code_for("churn-2024") == FeatureCode("none", "none"), "no module: the numeric columns as they are"
    plain = compute(code_for("churn-2024"), frame.assign(colour="red"), "target")
    assert "colour" not in plain.columns and len(plain.columns) == 31
    with pytest.raises(FeatureError, match="dropped the label column 'label'"):
        compute(code, frame.rename(columns={"target": "label"}).assign(target=0), "label")
    with pytest.raises(FeatureError, match=r"feature column .colour. .* is not numeric"):
        compute(FeatureCode("m", "s", lambda f: f.assign(colour="red")), frame, "target")


def test_artifact_digest_covers_paths_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.skops").write_bytes(b"weights")
    (tmp_path / "MLmodel").write_text("flavors: {}")
    first = artifact_digest(tmp_path)
    (tmp_path / "registered_model_meta").write_text("model_name: other")
    assert artifact_digest(tmp_path) == first, "the registry's own metadata file is not part of the model"
    (tmp_path / "a" / "model.skops").write_bytes(b"weightz")
    assert artifact_digest(tmp_path) != first


def test_smoke_example_is_a_real_dataset_row() -> None:
    example = json.loads((ROOT / "apps" / "serving" / "smoke_example.json").read_text())
    features, _ = load_frame()
    assert example["columns"] == list(features.columns)
    assert example["instances"][0] == features.iloc[0].tolist()

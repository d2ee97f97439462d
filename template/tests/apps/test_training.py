"""The reference training job, without a server: data lineage, metrics, and what a run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from apps.training.data import dataset_sha256, load_frame, split
from apps.training.train import TrainingConfig, build_pipeline, evaluate, model_card, pip_requirements
from core.registry import artifact_digest
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
    )
    assert "| roc_auc | 0.9900 |" in card and "`abc`" in card and "`123`" in card


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

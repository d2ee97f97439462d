"""Model promotion policies: the shipped files are valid, and each rule passes and fails when it should."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.models import Evidence, PolicyError, evaluate, load_policy

GOOD_METRICS = {"accuracy": 0.97, "roc_auc": 0.995, "f1": 0.97, "roc_auc_group_gap": 0.01}
GOOD_TAGS = {
    tag: "x"
    for tag in ("model_version", "git_sha", "dataset_sha256", "training_config", "artifact_sha256", "explanation")
}


def evidence(**changes: object) -> Evidence:
    values: dict[str, object] = {
        "model": "m",
        "model_version": 3,
        "metrics": GOOD_METRICS,
        "tags": GOOD_TAGS,
        "has_signature": True,
        "source_serving_version": 3,
    }
    values.update(changes)
    return Evidence(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_shipped_policies_load_and_pass_a_good_model(environment: str) -> None:
    policy = load_policy(environment)
    verdict = evaluate(policy, evidence(source_serving_version=None if environment == "dev" else 3))
    assert verdict.passed, verdict.failures


def test_floors_tighten_towards_prod() -> None:
    floors = [load_policy(env).min_metrics["roc_auc"] for env in ("dev", "staging", "prod")]
    assert floors == sorted(floors) and len(set(floors)) == 3


def test_order_rule_only_from_the_previous_environment() -> None:
    assert load_policy("dev").source is None
    assert load_policy("staging").source.value == "dev"  # type: ignore[union-attr]
    assert load_policy("prod").source.value == "staging"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("changes", "rule", "detail"),
    [
        ({"source_serving_version": 2}, "order", "staging serves version 2"),
        ({"source_serving_version": None}, "order", "staging serves no version yet"),
        ({"metrics": {**GOOD_METRICS, "roc_auc": 0.9}}, "min_roc_auc", "roc_auc = 0.9000, floor 0.97"),
        ({"metrics": {k: v for k, v in GOOD_METRICS.items() if k != "f1"}}, "min_f1", "f1 was not logged"),
        ({"metrics": {**GOOD_METRICS, "roc_auc_group_gap": 0.2}}, "group_gap_roc_auc", "gap between groups = 0.2000"),
        ({"tags": {**GOOD_TAGS, "git_sha": ""}}, "lineage_tags", "missing: git_sha"),
        ({"has_signature": False}, "signature", "no signature"),
    ],
)
def test_each_rule_fails_with_its_reason(changes: dict[str, object], rule: str, detail: str) -> None:
    verdict = evaluate(load_policy("prod"), evidence(**changes))
    assert not verdict.passed
    assert [(f.rule, detail in f.detail) for f in verdict.failures] == [(rule, True)]


def test_verdict_as_dict_is_structured() -> None:
    data = evaluate(load_policy("prod"), evidence(has_signature=False)).as_dict()
    assert data["passed"] is False and data["model_version"] == 3
    assert {"rule": "signature", "passed": False, "detail": "the model has no signature"} in data["rules"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("environment: prod\ndescription: x\nmin_metrics: {precision: 0.9}\n", "unknown metric"),
        ("environment: prod\ndescription: x\nmin_metrics: {roc_auc: 1.5}\n", "must be between 0 and 1"),
        ("environment: prod\ndescription: x\nfloors: {}\n", "floors: Extra inputs are not permitted"),
        ("environment: staging\ndescription: x\n", "environment is 'staging', expected 'prod'"),
        ("environment: prod\ndescription: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_policy_file_is_refused_with_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "prod.yaml").write_text(text)
    with pytest.raises(PolicyError, match=r"prod\.yaml") as raised:
        load_policy("prod", tmp_path)
    assert message in str(raised.value)

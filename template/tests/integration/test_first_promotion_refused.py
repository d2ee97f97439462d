"""A fresh platform whose first promotion is refused: `up` reports it at once, and nothing is served."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.config import load_stack
from pipelines.local.environment import LocalEnvironment
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.usefixtures("restore_environ")
def test_refused_first_promotion_is_reported_without_waiting(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    for environment in ("dev", "staging", "prod"):
        text = (ROOT / "policies" / "models" / f"{environment}.yaml").read_text()
        (policies / f"{environment}.yaml").write_text(text.replace("roc_auc: 0.90", "roc_auc: 0.9999"))
    model = load_stack(ROOT, "local").serving.model.name
    env = LocalEnvironment(ROOT, model, home=tmp_path / "state", policy_dir=policies)
    try:
        started = time.monotonic()
        summary = env.up()
        assert time.monotonic() - started < 150, "no wait for a model that cannot arrive"
        assert summary.refused is not None and "min_roc_auc" in summary.refused and "floor 0.9999" in summary.refused
        assert [p["environment"] for p in summary.promotions] == ["dev"]
        assert summary.champions == {"dev": None, "staging": None, "prod": None}
        assert summary.served_version is None and summary.smoke == []
        assert env.champions() == summary.champions, "status lookups work for a model without a champion"
    finally:
        env.down(purge=True)

"""What links a dataset version to others: the models trained on it (MLflow's tags), and its shift from another."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.serving.drift import Reference, compare
from core.datasets.manifest import Manifest
from core.datasets.store import DatasetStore
from core.errors import EnvironmentProblem
from pipelines.local.environment import LocalEnvironment

DATASET_TAGS = ("dataset_name", "dataset_version", "dataset_sha256")


@dataclass(frozen=True)
class Trained:
    names: list[str]
    note: str = ""


def models_trained_on(manifest: Manifest, tracking_uri: str | None, environment: LocalEnvironment) -> Trained:
    """The registered model versions whose lineage tag names this version's SHA-256."""
    try:
        uri = tracking_uri or environment.tracking_uri()
    except EnvironmentProblem:
        return Trained([], "not looked up (no MLflow server: `mlops local up`, or pass --tracking-uri)")
    from mlflow import MlflowClient  # noqa: PLC0415 -- heavy
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        found = MlflowClient(uri).search_model_versions(f"tags.dataset_sha256 = '{manifest.sha256}'")
    except MlflowException as error:
        return Trained([], f"not looked up ({uri}: {error.message})")
    names = sorted(f"{v.name} v{v.version}" for v in found)
    return Trained(names, "none" if not names else "")


@dataclass
class Comparison:
    first: Manifest
    second: Manifest
    added: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    retyped: dict[str, tuple[str, str]] = field(default_factory=dict)
    shifts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [s["column"] for s in self.shifts if s["shifted"]]

    def rows(self) -> list[list[Any]]:
        rows: list[list[Any]] = [[c, "added", None, None, None, None, None, None] for c in self.added]
        rows += [[c, "dropped", None, None, None, None, None, None] for c in self.dropped]
        rows += [[c, f"{a} → {b}", None, None, None, None, None, None] for c, (a, b) in self.retyped.items()]
        for s in self.shifts:
            rows.append(
                [
                    s["column"],
                    "",
                    round(s["mean_before"], 4),
                    round(s["mean_after"], 4),
                    round(s["shift_std"], 3),
                    f"{s['p_value']:.2g}",
                    round(s["psi"], 3),
                    s["shifted"],
                ]
            )
        return rows

    def footer(self) -> str:
        schema = (
            "same schema"
            if not (self.added or self.dropped or self.retyped)
            else (f"schema: {len(self.added)} added, {len(self.dropped)} dropped, {len(self.retyped)} retyped")
        )
        return f"{schema}; a column shifted when its KS p-value is below 0.01 (samples of up to 1,000 rows each)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "first": {"ref": self.first.ref, "sha256": self.first.sha256, "rows": self.first.rows},
            "second": {"ref": self.second.ref, "sha256": self.second.sha256, "rows": self.second.rows},
            "added": self.added,
            "dropped": self.dropped,
            "retyped": {c: {"before": a, "after": b} for c, (a, b) in self.retyped.items()},
            "shifts": self.shifts,
            "shifted": self.drifted,
        }


def compare_versions(store: DatasetStore, first: Manifest, second: Manifest) -> Comparison:
    before, after = first.dtypes(), second.dtypes()
    result = Comparison(first, second)
    result.added = [c for c in after if c not in before]
    result.dropped = [c for c in before if c not in after]
    result.retyped = {c: (before[c], after[c]) for c in before if c in after and before[c] != after[c]}
    numeric = [
        c
        for c in before
        if c in after and c not in result.retyped and first.stats[c].mean is not None and c != first.label
    ]
    if not numeric:
        return result
    a = Reference.of(store.sample(first).select(numeric).to_pandas(), seed=0)
    b = Reference.of(store.sample(second).select(numeric).to_pandas(), seed=1)
    report = compare(a, b.features)
    for feature in report.features:
        spread = first.stats[feature.feature].std or 0.0
        mean_before, mean_after = first.stats[feature.feature].mean or 0.0, second.stats[feature.feature].mean or 0.0
        shift = (mean_after - mean_before) / spread if spread else (0.0 if mean_after == mean_before else np.inf)
        result.shifts.append(
            {
                "column": feature.feature,
                "mean_before": mean_before,
                "mean_after": mean_after,
                "shift_std": float(shift),
                "ks_statistic": feature.ks_statistic,
                "p_value": feature.p_value,
                "psi": feature.psi,
                "shifted": feature.drifted,
            }
        )
    return result

"""Input drift: a served sample compared with the training reference, feature by feature.

One function decides drift for both callers: the serving app (its `model_drift_share` gauge, for the
alert) and `mlops drift` (the report and the retraining trigger). Each feature gets a two-sample
Kolmogorov-Smirnov test (scipy) and a population stability index over the reference's deciles; a
feature drifts when the KS p-value is below `alpha`, and the sample drifts when the share of drifted
features reaches `threshold`.

Why scipy and not Evidently: Evidently 0.7.23 (the newest release) fails at import with pandas 3
(`infer_dtype_from_object` is gone from `pandas.core.dtypes.common`), and this project's lock needs
pandas 3. The statistics are the ones Evidently applies to small numeric samples (KS, p < 0.05 by
default); the template's default `alpha` is stricter (0.01) because 30 features tested at 0.05 would
flag one or two on an unshifted sample by chance.

The reference travels inside the model's artifacts (`drift_reference.npz`), so every registry copy
of a version carries the data it was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE_FILE = "drift_reference.npz"
REFERENCE_ROWS = 1000
MIN_SAMPLE_ROWS = 50
_PSI_FLOOR = 1e-4  # an empty bin would make the index infinite


@dataclass(frozen=True)
class Reference:
    features: np.ndarray  # rows x features, training order
    names: tuple[str, ...]

    def save(self, directory: Path) -> Path:
        path = directory / REFERENCE_FILE
        np.savez_compressed(path, features=self.features, names=np.asarray(self.names, dtype=str))
        return path

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path, allow_pickle=False) as data:
            return cls(np.asarray(data["features"], dtype=np.float64), tuple(str(n) for n in data["names"]))

    @classmethod
    def of(cls, features: Any, seed: int = 0) -> Reference:
        """A bounded reference from a training frame: at most REFERENCE_ROWS rows, drawn without replacement."""
        matrix = np.asarray(features, dtype=np.float64)
        if len(matrix) > REFERENCE_ROWS:
            rows = np.random.default_rng(seed).choice(len(matrix), REFERENCE_ROWS, replace=False)
            matrix = matrix[np.sort(rows)]
        names = tuple(str(c) for c in getattr(features, "columns", range(matrix.shape[1])))
        return cls(matrix, names)


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    ks_statistic: float
    p_value: float
    psi: float
    reference_mean: float
    current_mean: float
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    sample_rows: int
    reference_rows: int
    alpha: float
    threshold: float
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def enough_data(self) -> bool:
        return self.sample_rows >= MIN_SAMPLE_ROWS

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def share(self) -> float:
        """The drift score: the share of features that drifted (0 when the sample is too small to say)."""
        if not self.enough_data or not self.features:
            return 0.0
        return len(self.drifted_features) / len(self.features)

    @property
    def drifted(self) -> bool:
        return self.enough_data and self.share >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "sample_rows": self.sample_rows,
            "reference_rows": self.reference_rows,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "enough_data": self.enough_data,
            "share": round(self.share, 4),
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "features": [
                {
                    "feature": f.feature,
                    "ks_statistic": round(f.ks_statistic, 4),
                    "p_value": f.p_value,
                    "psi": round(f.psi, 4),
                    "reference_mean": f.reference_mean,
                    "current_mean": f.current_mean,
                    "drifted": f.drifted,
                }
                for f in self.features
            ],
        }


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` over the reference's quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference feature: any other value is a shift
        return 0.0 if np.all(current == reference[0]) else math.inf
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.maximum(np.histogram(reference, edges)[0] / len(reference), _PSI_FLOOR)
    actual = np.maximum(np.histogram(current, edges)[0] / len(current), _PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def compare(reference: Reference, sample: np.ndarray, *, alpha: float = 0.01, threshold: float = 0.2) -> DriftReport:
    """Per-feature drift of `sample` (rows x features, training order) against the reference."""
    from scipy.stats import ks_2samp  # noqa: PLC0415 -- scipy is loaded only by the callers that test

    if not 0 < alpha < 1 or not 0 < threshold <= 1:
        raise ValueError(f"alpha must be in (0, 1) and threshold in (0, 1]; got alpha={alpha}, threshold={threshold}")
    current = np.asarray(sample, dtype=np.float64).reshape(-1, reference.features.shape[1]) if len(sample) else sample
    report = DriftReport(len(current), len(reference.features), alpha, threshold)
    if len(current) < MIN_SAMPLE_ROWS:
        return report
    for column, name in enumerate(reference.names):
        ref, cur = reference.features[:, column], current[:, column]
        test = ks_2samp(ref, cur)
        p_value = float(test.pvalue)
        report.features.append(
            FeatureDrift(
                name,
                float(test.statistic),
                p_value,
                psi(ref, cur),
                float(ref.mean()),
                float(cur.mean()),
                p_value < alpha,
            )
        )
    return report


class Reservoir:
    """A bounded uniform sample of the rows served (Vitter's algorithm R); not thread-safe by itself."""

    def __init__(self, capacity: int, width: int, seed: int | None = None) -> None:
        self.capacity, self.width = capacity, width
        self.rows = np.empty((capacity, width), dtype=np.float64)
        self.seen = 0
        self._rng = np.random.default_rng(seed)

    def add(self, batch: np.ndarray) -> None:
        """Algorithm R for every row of `batch`, in numpy: row t (counting from 0 over all rows seen)
        fills slot t while there is room, then replaces slot j ~ U[0, t] when j < capacity."""
        rows = np.asarray(batch, dtype=np.float64).reshape(-1, self.width)
        free = max(0, min(self.capacity - self.seen, len(rows)))
        if free:
            self.rows[self.seen : self.seen + free] = rows[:free]
        rest = rows[free:]
        if len(rest) == 1:  # the common 1-row request: numpy's vector set-up would cost more than the draw
            slot = int(self._rng.integers(0, self.seen + free + 1))
            if slot < self.capacity:
                self.rows[slot] = rest[0]
        elif len(rest):
            positions = np.arange(self.seen + free, self.seen + len(rows))
            slots = self._rng.integers(0, positions + 1)
            kept = slots < self.capacity
            taken, replacing = slots[kept], rest[kept]
            # A slot drawn twice in one batch ends with the later row, as in the row-by-row algorithm
            # (numpy does not promise which of repeated indices an assignment keeps).
            unique, first_from_end = np.unique(taken[::-1], return_index=True)
            self.rows[unique] = replacing[len(taken) - 1 - first_from_end]
        self.seen += len(rows)

    def sample(self) -> np.ndarray:
        return self.rows[: min(self.seen, self.capacity)].copy()

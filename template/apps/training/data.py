"""The reference dataset: scikit-learn's breast cancer data (ships with the library; no download).

The fairness check needs groups; this dataset has no demographic column, so the groups are a
documented proxy: tumours whose `mean area` is above or below the training median. Swap in your own
sensitive attribute when you replace the dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from core.errors import BadInput

GROUP_FEATURE = "mean area"


@dataclass(frozen=True)
class Split:
    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    groups_test: pd.Series
    dataset_sha256: str


def load_frame() -> tuple[pd.DataFrame, pd.Series]:
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data.astype("float64"), bunch.target.astype("int64")


def dataset_sha256(features: pd.DataFrame, target: pd.Series) -> str:
    """A digest of the exact rows and columns trained on (lineage: which data made this model)."""
    digest = hashlib.sha256()
    digest.update(",".join(features.columns).encode())
    digest.update(np.ascontiguousarray(features.to_numpy(dtype="float64")).tobytes())
    digest.update(np.ascontiguousarray(target.to_numpy(dtype="int64")).tobytes())
    return digest.hexdigest()


def split(
    test_size: float,
    random_state: int,
    frame: tuple[pd.DataFrame, pd.Series] | None = None,
    group_feature: str = GROUP_FEATURE,
    digest: str | None = None,
) -> Split:
    """A stratified split of `frame` (features, 0/1 target; default the bundled data), with the fairness
    groups of the held-out rows: `group_feature` above or below its training median."""
    features, target = frame if frame is not None else load_frame()
    if group_feature not in features.columns:
        raise BadInput(
            f"the fairness group feature {group_feature!r} is not a feature column",
            hint=f"--param group_feature=COLUMN, one of: {', '.join(map(str, features.columns[:12]))}",
        )
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=test_size, random_state=random_state, stratify=target
    )
    threshold = float(x_train[group_feature].median())
    groups = pd.Series(np.where(x_test[group_feature] > threshold, "large", "small"), index=x_test.index)
    return Split(x_train, x_test, y_train, y_test, groups, digest or dataset_sha256(features, target))

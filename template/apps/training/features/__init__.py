"""Feature definitions, one module per dataset: `apps/training/features/<dataset name, '-' as '_'>.py`.

A module defines `features(frame: pandas.DataFrame) -> pandas.DataFrame`: a plain function from a dataset
version's rows to the model's inputs, every returned column numeric, the label column kept as it is. It is
versioned by git like the rest of the code: training records the module's git blob SHA (`feature_code_sha`,
what `git hash-object` prints for the file) and stores what the function computed as a dataset version of
its own, `<name>-features`, whose manifest names the source version and that SHA.

A dataset without a module trains on its numeric columns as they are (`feature_code_sha`: `none`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pandas as pd
from pandas.api.types import is_numeric_dtype


class FeatureError(ValueError):
    """The feature function's output cannot be trained on (named column)."""


@dataclass(frozen=True)
class FeatureCode:
    module: str  # `apps.training.features.diagnosis`, or `none`
    sha: str  # the git blob SHA of its file, or `none`
    function: object | None = None


def module_name(dataset: str) -> str:
    return f"{__name__}.{dataset.replace('-', '_')}"


def blob_sha(path: Path) -> str:
    """What `git hash-object FILE` prints: the file's address in git, committed or not."""
    content = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def code_for(dataset: str) -> FeatureCode:
    name = module_name(dataset)
    if importlib.util.find_spec(name) is None:
        return FeatureCode("none", "none")
    module: ModuleType = importlib.import_module(name)
    if not callable(getattr(module, "features", None)):
        raise FeatureError(f"{module.__file__} defines no `features(frame)` function")
    return FeatureCode(name, blob_sha(Path(str(module.__file__))), module.features)


def compute(code: FeatureCode, frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """The model's inputs and the label: the module's function, or the numeric columns as they are."""
    if code.function is None:
        kept = [c for c in frame.columns if c == label or is_numeric_dtype(frame[c])]
        result = frame[kept]
    else:
        result = code.function(frame)  # type: ignore[operator]
        if not isinstance(result, pd.DataFrame):
            raise FeatureError(f"{code.module}.features returned {type(result).__name__}, not a DataFrame")
    if label not in result.columns:
        raise FeatureError(f"{code.module}.features dropped the label column {label!r}")
    for column in result.columns:
        if not is_numeric_dtype(result[column]):
            raise FeatureError(f"feature column {column!r} ({result[column].dtype}) is not numeric")
    if len(result.columns) < 2:
        raise FeatureError("no feature column is left (only the label)")
    return result.reset_index(drop=True)

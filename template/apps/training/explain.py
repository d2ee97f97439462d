"""A global explanation of each trained version: permutation importance on held-out rows (scikit-learn),
logged as `explanation/permutation_importance.json` and summarised in the model card; the tag `explanation`
says it is there (a model policy can require it: `required_tags: [explanation]`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROWS = 5_000  # held-out rows it is computed on at most (random, fixed seed): seconds, whatever the data
REPEATS = 5
ARTIFACT = "explanation/permutation_importance.json"
METHOD = "permutation_importance"


def permutation_importances(model: Any, x_test: pd.DataFrame, y_test: pd.Series, seed: int) -> list[dict[str, Any]]:
    """Per feature, how much ROC AUC drops when its values are shuffled (mean and std over REPEATS), largest first."""
    from sklearn.inspection import permutation_importance  # noqa: PLC0415 -- heavy

    if len(x_test) > ROWS:
        rows = np.random.default_rng(seed).choice(len(x_test), size=ROWS, replace=False)
        x_test, y_test = x_test.iloc[rows], y_test.iloc[rows]
    result = permutation_importance(
        model, x_test, y_test, scoring="roc_auc", n_repeats=REPEATS, random_state=seed, n_jobs=1
    )
    found = [
        {"feature": str(name), "importance_mean": float(mean), "importance_std": float(std)}
        for name, mean, std in zip(x_test.columns, result.importances_mean, result.importances_std, strict=True)
    ]
    return sorted(found, key=lambda f: -f["importance_mean"])


def write(importances: list[dict[str, Any]], rows: int, directory: Path) -> Path:
    path = directory / Path(ARTIFACT).name
    path.write_text(
        json.dumps(
            {"method": METHOD, "scoring": "roc_auc", "repeats": REPEATS, "rows": rows, "features": importances},
            indent=2,
        )
    )
    return path


def card_section(importances: list[dict[str, Any]], top: int = 10) -> str:
    lines = [f"| {f['feature']} | {f['importance_mean']:.4f} | {f['importance_std']:.4f} |" for f in importances[:top]]
    return (
        "## Explanation\n"
        f"Permutation importance on held-out rows (ROC AUC lost when a feature is shuffled, {REPEATS} repeats);"
        f" the {min(top, len(importances))} largest of {len(importances)}, all in `{ARTIFACT}`.\n\n"
        "| feature | importance | std |\n| --- | --- | --- |\n" + "\n".join(lines) + "\n"
    )

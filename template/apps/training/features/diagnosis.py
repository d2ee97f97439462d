"""Features of the `diagnosis` dataset (scikit-learn's breast cancer data, `mlops data add --from-sklearn
breast_cancer --name diagnosis`): the thirty measurements as the model's inputs, in a fixed order, as
float64; the label `target` (0 malignant, 1 benign) as it is.

The model serves exactly these columns (serving validates requests against the model's signature), so a
change here that adds or derives a column changes what clients send: ship it as a new model.
"""

from __future__ import annotations

import pandas as pd

LABEL = "target"
MEASUREMENTS = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave points",
    "symmetry",
    "fractal dimension",
)
# scikit-learn's names: `mean radius` … `mean fractal dimension`, `radius error` …, `worst radius` ….
COLUMNS = (
    [f"mean {m}" for m in MEASUREMENTS] + [f"{m} error" for m in MEASUREMENTS] + [f"worst {m}" for m in MEASUREMENTS]
)


def features(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the diagnosis data lacks column(s) {', '.join(map(repr, missing))}")
    result = frame[COLUMNS].astype("float64")
    result[LABEL] = frame[LABEL].astype("int64")
    return result

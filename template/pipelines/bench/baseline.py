"""The benchmark's floor: a bare ASGI app computing the same model, under the same uvicorn.

    MODEL_WEIGHTS_FILE=weights.json uvicorn pipelines.bench.baseline:app --lifespan off

It does what a request to the serving app must do at the least: read the JSON body, take the dot
product of each row with the model's weights (the compiled form of the served pipeline, see
`apps/serving/model.py`), apply the sigmoid and write JSON. No validation, metrics, sample or
headers: the serving app's figure divided by this one is what the framework and those features cost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

_weights: tuple[np.ndarray, float] | None = None


def _model() -> tuple[np.ndarray, float]:
    global _weights  # noqa: PLW0603 -- read once per process, on the first request
    if _weights is None:
        saved = json.loads(Path(os.environ["MODEL_WEIGHTS_FILE"]).read_text())
        _weights = np.asarray(saved["weights"], dtype=np.float64), float(saved["intercept"])
    return _weights


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":  # a readiness probe
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    weights, intercept = _model()
    rows = np.asarray(json.loads(body)["instances"], dtype=np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-(rows @ weights + intercept)))
    answer = json.dumps(
        {"predictions": (probabilities >= 0.5).astype(int).tolist(), "probabilities": probabilities.tolist()}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})

"""`mlops local traffic`: replay the reference data's held-out rows against local serving, so that the
shadow, the drift gauges and the dashboards have real requests to show (and the prod gate has evidence).

Rows go in the training column order, `batch` rows a request, from a few concurrent clients, cycling
through the held-out split (`apps/training/data.py`) until `rows` rows were sent. Every answer is
counted by status; the summary says what the served model answered and, when a shadow runs, what the
shadow has scored so far.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from core.errors import BadInput, EnvironmentProblem

CLIENTS = 4
MAX_ROWS = 1_000_000


@dataclass
class TrafficSummary:
    url: str
    rows: int
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    predicted: Counter[int] = field(default_factory=Counter)
    served_versions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "rows": self.rows,
            "requests": self.requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "predicted_classes": {str(k): v for k, v in sorted(self.predicted.items())},
            "served_versions": dict(self.served_versions),
            "seconds": round(self.seconds, 2),
        }


def held_out_rows() -> np.ndarray:
    from apps.training.data import split  # noqa: PLC0415

    return np.asarray(split(0.25, 42).x_test, dtype=np.float64)


def replay(serving_url: str, rows: int, batch: int = 1, progress: Any = None) -> TrafficSummary:
    """Send `rows` held-out rows, `batch` a request, to `serving_url`/predict."""
    if not 1 <= rows <= MAX_ROWS:
        raise BadInput(f"--rows must be between 1 and {MAX_ROWS:,} (got {rows})")
    if not 1 <= batch <= 1000:
        raise BadInput(f"--batch must be between 1 and 1000 (got {batch})")
    data = held_out_rows()
    order = np.resize(np.arange(len(data)), rows)  # cycles through the held-out split
    chunks = [data[order[i : i + batch]].tolist() for i in range(0, rows, batch)]
    summary = TrafficSummary(serving_url, rows)
    started = time.monotonic()
    say = progress or (lambda _message: None)

    with httpx.Client(timeout=30) as client:

        def send(instances: list[list[float]]) -> tuple[int, list[int], str]:
            try:
                response = client.post(f"{serving_url}/predict", json={"instances": instances})
            except httpx.HTTPError as exc:
                raise EnvironmentProblem(
                    f"serving at {serving_url} does not answer: {exc}", hint="is `mlops local up` running?"
                ) from None
            answered = response.json().get("predictions", []) if response.status_code == 200 else []
            return response.status_code, answered, response.headers.get("x-model-version", "")

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            for done, (status, predictions, version) in enumerate(pool.map(send, chunks), start=1):
                summary.requests += 1
                summary.statuses[status] += 1
                summary.predicted.update(predictions)
                if version:
                    summary.served_versions[version] += 1
                if done % max(1, len(chunks) // 4) == 0:
                    say(f"traffic: {done}/{len(chunks)} requests sent")
    summary.seconds = time.monotonic() - started
    return summary

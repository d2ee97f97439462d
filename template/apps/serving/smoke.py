"""Smoke test of a serving endpoint: the same checks locally, after a deploy, and in the testinfra suite."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx


@dataclass
class SmokeResult:
    url: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    model_version: int | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        return ok


EXAMPLE = Path(__file__).with_name("smoke_example.json")


def sample_row() -> list[float]:
    """A real row of the reference dataset, in training column order (shipped, so smoke tests need no data)."""
    return [float(v) for v in json.loads(EXAMPLE.read_text())["instances"][0]]


def run_smoke(url: str, expected_version: int | None = None, timeout: float = 10) -> SmokeResult:
    result = SmokeResult(url.rstrip("/"))
    with httpx.Client(base_url=result.url, timeout=timeout) as client:
        for path in ("/livez", "/readyz"):
            response = client.get(path)
            result.add(f"GET {path}", response.status_code == 200, f"HTTP {response.status_code}")
        response = client.post("/predict", json={"instances": [sample_row()]})
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        header = response.headers.get("x-model-version")
        ok = response.status_code == 200 and len(body.get("predictions", [])) == 1 and header is not None
        result.add("POST /predict (1 row)", ok, f"HTTP {response.status_code}, X-Model-Version {header}")
        if header and header.isdigit():
            result.model_version = int(header)
        if expected_version is not None:
            result.add(
                "serves the expected version",
                result.model_version == expected_version,
                f"expected {expected_version}, got {result.model_version}",
            )
        bad = client.post("/predict", json={"instances": [[1.0, 2.0]]})
        result.add("bad input is refused with a 4xx", 400 <= bad.status_code < 500, f"HTTP {bad.status_code}")
        metrics = client.get("/metrics").text
        pattern = rf'model_predictions_total\{{[^}}]*model_version="{result.model_version}"'
        result.add(
            "metrics labelled with the served version",
            bool(re.search(pattern, metrics)),
            "model_predictions_total present" if "model_predictions_total" in metrics else "metric missing",
        )
    return result

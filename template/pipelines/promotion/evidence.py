"""Shadow evidence: what a candidate did as an environment's shadow, beside the version it serves.

Read from the environment's Prometheus (`MLOPS_PROMETHEUS_<ENV>`, the deploy workflow sets it) over the
policy's window, or, for the local environment, straight from serving's `/metrics` (the counts since
the server started). Both read the series of `apps/serving/shadow.py` for one (champion, candidate) pair:
requests scored, dropped and failed, rows by agreement, and the candidate's latency histogram, whose
p95 is interpolated within its bucket as Prometheus' `histogram_quantile` does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx

from core.errors import BadInput, EnvironmentProblem
from policies.models import ShadowEvidence

REQUESTS = "model_shadow_requests_total"
ROWS = "model_shadow_rows_total"
DURATION = "model_shadow_duration_seconds_bucket"


def prometheus_url(environment: str) -> str | None:
    url = os.environ.get(f"MLOPS_PROMETHEUS_{environment.upper()}", "").strip()
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        raise BadInput(f"MLOPS_PROMETHEUS_{environment.upper()}: {url!r} is not an http(s) URL")
    return url.rstrip("/")


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """`histogram_quantile(q, …)` over cumulative (upper bound, count) buckets; None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):  # in the +Inf bucket: the largest finite bound, as Prometheus answers
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below) if count > below else upper
        lower, below = upper, count
    return lower


def _evidence(
    champion: int,
    candidate: int,
    *,
    outcomes: dict[str, float],
    rows: dict[str, float],
    buckets: list[tuple[float, float]],
    source: str,
) -> ShadowEvidence:
    scored_rows = rows.get("agree", 0.0) + rows.get("disagree", 0.0)
    p95 = quantile(0.95, buckets)
    return ShadowEvidence(
        champion_version=champion,
        candidate_version=candidate,
        requests=round(outcomes.get("scored", 0.0), 1),
        rows=round(scored_rows, 1),
        agreement=round(rows.get("agree", 0.0) / scored_rows, 4) if scored_rows else None,
        p95_ms=round(p95 * 1000, 3) if p95 is not None else None,
        dropped=round(outcomes.get("dropped", 0.0), 1),
        failed=round(outcomes.get("failed", 0.0) + outcomes.get("unavailable", 0.0), 1),
        source=source,
    )


def from_metrics_text(text: str, model_name: str, champion: int, candidate: int, source: str) -> ShadowEvidence:
    """The pair's evidence in a /metrics page (every series of the serving app, all workers summed)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    wanted = {"model_name": model_name, "model_version": str(champion), "shadow_version": str(candidate)}
    outcomes: dict[str, float] = {}
    rows: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if any(sample.labels.get(k) != v for k, v in wanted.items()):
                continue
            if sample.name == REQUESTS:
                outcomes[sample.labels["outcome"]] = outcomes.get(sample.labels["outcome"], 0.0) + sample.value
            elif sample.name == ROWS:
                rows[sample.labels["agreement"]] = rows.get(sample.labels["agreement"], 0.0) + sample.value
            elif sample.name == DURATION:
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return _evidence(champion, candidate, outcomes=outcomes, rows=rows, buckets=list(buckets.items()), source=source)


def from_serving(serving_url: str, model_name: str, champion: int, candidate: int) -> ShadowEvidence:
    url = serving_url.rstrip("/") + "/metrics"
    try:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise EnvironmentProblem(f"serving's metrics cannot be read at {url}: {exc}") from None
    return from_metrics_text(response.text, model_name, champion, candidate, url)


def from_prometheus(
    url: str, environment: str, model_name: str, champion: int, candidate: int, *, window_hours: int
) -> ShadowEvidence:
    """The pair's evidence over the last `window_hours` in the environment's Prometheus."""
    # Braces by concatenation: PromQL's next to an f-string's are hard to read.
    selector = (
        "{"
        + f'environment="{environment}",model_name="{model_name}",'
        + f'model_version="{champion}",shadow_version="{candidate}"'
        + "}"
    )
    window = f"[{window_hours}h]"

    def vector(query: str, label: str) -> dict[str, float]:
        try:
            response = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=30)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EnvironmentProblem(f"Prometheus at {url} cannot be queried: {exc}") from None
        if body.get("status") != "success":
            raise EnvironmentProblem(f"Prometheus at {url} refused {query!r}: {body.get('error')}")
        found = {}
        for item in body["data"]["result"]:
            value = float(item["value"][1])
            if math.isfinite(value):
                found[item["metric"].get(label, "")] = value
        return found

    outcomes = vector(f"sum by (outcome) (increase({REQUESTS}{selector}{window}))", "outcome")
    rows = vector(f"sum by (agreement) (increase({ROWS}{selector}{window}))", "agreement")
    buckets = vector(f"sum by (le) (increase({DURATION}{selector}{window}))", "le")
    pairs = [(float(le), count) for le, count in buckets.items()]
    return _evidence(champion, candidate, outcomes=outcomes, rows=rows, buckets=pairs, source=url)


def shadow_evidence(
    environment: str,
    model_name: str,
    champion: int,
    candidate: int,
    window_hours: int,
    *,
    serving_url: str | None = None,
) -> ShadowEvidence | None:
    """From the environment's Prometheus when it is configured, else from `serving_url`; None: neither."""
    url = prometheus_url(environment)
    if url is not None:
        return from_prometheus(url, environment, model_name, champion, candidate, window_hours=window_hours)
    if serving_url is not None:
        return from_serving(serving_url, model_name, champion, candidate)
    return None

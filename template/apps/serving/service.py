"""The BentoML service (1.4 class API): `bentoml serve apps.serving.service:ModelService`.

POST /predict  {"instances": [[f1, ..., f30], ...]}  ->  {"predictions": [...], "probabilities": [...]}
Bad input is a 4xx with a message, never a 500: wrong shape or type, NaN/inf, an empty or oversized
batch, a non-JSON body. The served model name and version are in the `X-Model-Name` and
`X-Model-Version` headers and in the labels of the Prometheus metrics at /metrics (see
`apps/serving/monitoring.py`). Where the time of a request goes, and why the app owns `/metrics` and
the request deadline: `apps/serving/asgi.py`.

POST /monitoring/sample   the recent input sample (for `mlops drift`), POST /monitoring/drift   the
app's own drift verdict, POST /model   what is served (and shadowed: `apps/serving/shadow.py`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, Field

with bentoml.importing():
    import numpy as np

    from apps.serving.asgi import ServingMiddleware, use_cancelling_timeout
    from apps.serving.config import ServingConfig
    from apps.serving.connections import use_head_deadline
    from apps.serving.drift import REFERENCE_FILE, DriftReport
    from apps.serving.guard import Limits, tagged
    from apps.serving.model import LoadedModel, ModelHolder
    from apps.serving.monitoring import NO_MODEL, InputSample, Metrics, VersionMetrics, check_drift
    from apps.serving.shadow import ShadowScorer

CONFIG = ServingConfig.from_env()
SERVED: list[ModelHolder] = []  # this worker's model holder, once the service is made
SHADOWED: list[ShadowScorer] = []  # and its shadow scorer, when a candidate is configured
log = logging.getLogger(__name__)
use_cancelling_timeout()
use_head_deadline()
# Routes BentoML traces when SERVING_TRACING is off: with no exporter configured it still made and
# dropped a span per request (a fifth of a 1-row request's CPU).
UNTRACED = ["/predict", "/model", "/monitoring", "/metrics", "/livez", "/readyz", "/docs", "/schema"]

# Strict: a number only (a string such as "17.99", true/false or null is refused, naming row and column).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
Row = Annotated[list[FiniteFloat], Field(min_length=1, max_length=10_000)]
# No schema bound on rows: the body limit and MAX_BATCH_ROWS (413, apps/serving/guard.py) bound a batch.
Instances = Annotated[list[Row], Field(min_length=1)]


class ServedModel(BaseModel):
    name: str
    version: int
    environment: str


class Prediction(BaseModel):
    """The response of /predict. A model (not a dict) also spares BentoML deriving a JSON schema from
    the return annotation on every response to pick its content type."""

    predictions: list[int]
    probabilities: list[float | None]
    model: ServedModel


class RequestRejected(BentoMLException):
    """A 4xx whose message tells the client what to fix (counted by reason in the metrics)."""

    def __init__(self, message: str, status: HTTPStatus, reason: str) -> None:
        super().__init__(tagged(reason, message), error_code=status)
        self.reason = reason


@bentoml.service(
    name="model-serving",
    workers=CONFIG.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": CONFIG.access_log}},
    metrics={"enabled": False},  # ServingMiddleware serves /metrics (apps/serving/asgi.py)
    **({} if CONFIG.tracing else {"tracing": {"excluded_urls": UNTRACED}}),
)
class ModelService:
    def __init__(self) -> None:
        self.metrics = Metrics.get()
        self.holder = ModelHolder(CONFIG)
        self.holder.start()
        SERVED.append(self.holder)
        self.shadow: ShadowScorer | None = None
        if CONFIG.shadowing:  # a candidate scored beside the champion, in a process of its own (apps/serving/shadow.py)
            self.shadow = ShadowScorer(
                {
                    "config": CONFIG.shadow_config().model_dump(mode="json"),
                    "cpu_share": CONFIG.shadow_cpu_share,
                    "priority": CONFIG.shadow_priority,
                },
                lambda version: self.metrics.bound(CONFIG.model_name, version, CONFIG.environment),
                pinned_version=CONFIG.shadow_model_version,
                sample_pct=CONFIG.shadow_sample_pct,
                queue_size=CONFIG.shadow_queue_size,
            )
            self.shadow.start()
            SHADOWED.append(self.shadow)
        self._samples: dict[int, InputSample] = {}
        self._samples_lock = threading.Lock()
        if CONFIG.drift_check_seconds > 0:
            threading.Thread(target=self._watch_drift, name="drift-gauge", daemon=True).start()

    def __is_ready__(self) -> bool:
        return self.holder.model is not None

    def _bound(self, model: LoadedModel | None) -> VersionMetrics:
        version = str(model.model_version) if model is not None else NO_MODEL
        return self.metrics.bound(CONFIG.model_name, version, CONFIG.environment)

    def _sample_of(self, model: LoadedModel) -> InputSample:
        """One input sample per registry version: a new version starts a fresh sample."""
        with self._samples_lock:
            found = self._samples.get(model.registry_version)
            if found is None:
                self._samples = {
                    model.registry_version: InputSample(
                        CONFIG.drift_sample_rows, model.n_features, CONFIG.drift_window_seconds
                    )
                }
                found = self._samples[model.registry_version]
            return found

    # An async endpoint runs on the event loop: no hop to a worker thread for a ~20 µs prediction.
    @bentoml.api(route="/predict")
    async def predict(self, instances: Instances, ctx: bentoml.Context) -> Prediction:
        model = self.holder.model
        bound = self._bound(model)
        try:
            if model is None:
                bound.failed("unavailable")
                raise BentoMLException(
                    f"model not loaded yet: {self.holder.last_error}", error_code=HTTPStatus.SERVICE_UNAVAILABLE
                )
            rows = self._validated(instances, model)
            probabilities = model.predict_proba(rows)
            predictions = (probabilities >= 0.5).astype(np.int64)
        except BentoMLException:  # a RequestRejected is counted by ServingMiddleware, under its reason
            raise
        except Exception:
            bound.failed("error")
            raise
        self._sample_of(model).add(rows)
        bound.served(probabilities, predictions)
        if self.shadow is not None:
            self.shadow.offer(model, rows, probabilities, predictions)
        version = str(model.model_version)
        ctx.response.headers["X-Model-Name"] = CONFIG.model_name
        ctx.response.headers["X-Model-Version"] = version
        # model_construct: the values are ours and typed already; validating them again costs ~10 µs.
        return Prediction.model_construct(
            predictions=predictions.tolist(),
            probabilities=[round(p, 6) if math.isfinite(p) else None for p in probabilities.tolist()],
            model=ServedModel.model_construct(
                name=CONFIG.model_name, version=model.model_version, environment=CONFIG.environment
            ),
        )

    @staticmethod
    def _validated(instances: list[list[float]], model: LoadedModel) -> np.ndarray:
        if len(instances) > CONFIG.max_batch_rows:
            raise RequestRejected(
                f"instances: {len(instances)} rows exceed the limit of {CONFIG.max_batch_rows}; split the batch",
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "batch_too_large",
            )
        widths = {len(row) for row in instances}
        if widths != {model.n_features}:
            raise RequestRejected(
                f"instances: every row must have {model.n_features} features "
                f"(in training column order); got rows of {sorted(widths)}",
                HTTPStatus.UNPROCESSABLE_ENTITY,
                "wrong_shape",
            )
        return np.asarray(instances, dtype=np.float64)

    def _drift_report(self, model: LoadedModel) -> tuple[DriftReport, np.ndarray]:
        if model.reference is None:
            raise BentoMLException(
                f"model version {model.model_version} has no drift reference in its artifacts "
                f"({REFERENCE_FILE}); retrain it with this template's training code",
                error_code=HTTPStatus.CONFLICT,
            )
        return check_drift(
            self._sample_of(model), model.reference, alpha=CONFIG.drift_alpha, threshold=CONFIG.drift_threshold
        )

    def _watch_drift(self) -> None:
        """Recompute the drift gauge and feature statistics from the sample, off the request path."""
        while True:
            time.sleep(CONFIG.drift_check_seconds)
            model = self.holder.model
            if model is None or model.reference is None:
                continue
            try:
                report, rows = self._drift_report(model)
                self._bound(model).drift(report, rows, model.reference.names)
            except Exception:
                log.exception("drift check failed")

    @bentoml.api(route="/monitoring/sample")
    def sample(self) -> dict[str, Any]:
        """The input sample drift is judged on, and which version it was served by (for `mlops drift`)."""
        model = self.holder.model
        if model is None:
            raise BentoMLException("model not loaded yet", error_code=HTTPStatus.SERVICE_UNAVAILABLE)
        rows, seen = self._sample_of(model).sample()
        return {
            "model": {
                "name": CONFIG.model_name,
                "environment": CONFIG.environment,
                "model_version": model.model_version,
                "registry_version": model.registry_version,
            },
            "feature_names": list(model.feature_names),
            "rows_seen": seen,
            "window_seconds": CONFIG.drift_window_seconds,
            "rows": rows.tolist(),
        }

    @bentoml.api(route="/monitoring/drift")
    def drift(self) -> dict[str, Any]:
        """The app's own drift verdict (what its `model_drift_share` gauge shows)."""
        model = self.holder.model
        if model is None:
            raise BentoMLException("model not loaded yet", error_code=HTTPStatus.SERVICE_UNAVAILABLE)
        report, _ = self._drift_report(model)
        return {"model_version": model.model_version, **report.as_dict()}

    @bentoml.api(route="/model")
    def model_info(self) -> dict[str, Any]:
        """What is served now (for smoke tests and `mlops local status`)."""
        model = self.holder.model
        return {
            "name": CONFIG.model_name,
            "environment": CONFIG.environment,
            "ready": model is not None,
            "model_version": model.model_version if model else None,
            "registry_version": model.registry_version if model else None,
            "n_features": model.n_features if model else None,
            "last_error": self.holder.last_error,
            "shadow": self.shadow.describe() if self.shadow is not None else None,
        }


def served_width() -> int | None:
    """The served model's number of features in this worker (bounds a batch's values before parsing)."""
    model = SERVED[-1].model if SERVED else None
    return model.n_features if model is not None else None


# `@bentoml.service` returns a Service wrapping the class; mypy sees the class.
ModelService.add_asgi_middleware(  # type: ignore[attr-defined]
    ServingMiddleware,
    model_name=CONFIG.model_name,
    environment=CONFIG.environment,
    limits=Limits(
        max_bytes=CONFIG.max_request_bytes,
        max_rows=CONFIG.max_batch_rows,
        body_timeout=CONFIG.body_timeout_seconds,
        width=served_width,
    ),
)

"""The BentoML service (1.4 class API): `bentoml serve apps.serving.service:ModelService`.

POST /predict  {"instances": [[f1, ..., f30], ...]}  ->  {"predictions": [...], "probabilities": [...]}
Bad input is a 4xx with a message, never a 500: wrong shape or type, NaN/inf, an empty or oversized
batch, a non-JSON body. The served model name and version are in the `X-Model-Name` and
`X-Model-Version` headers and in the labels of the Prometheus metrics at /metrics.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field

with bentoml.importing():
    import numpy as np

    from apps.serving.config import ServingConfig
    from apps.serving.model import ModelHolder

CONFIG = ServingConfig.from_env()

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Row = Annotated[list[FiniteFloat], Field(min_length=1, max_length=10_000)]
# The schema bound rejects absurd bodies early; MAX_BATCH_ROWS (413) is the configured limit.
Instances = Annotated[list[Row], Field(min_length=1, max_length=100_000)]

PREDICTIONS = bentoml.metrics.Counter(
    name="model_predictions_total",
    documentation="Rows predicted, by served model, environment and predicted class",
    labelnames=["model_name", "model_version", "environment", "predicted_class"],
)
REJECTED = bentoml.metrics.Counter(
    name="model_rejected_requests_total",
    documentation="Requests refused with a 4xx, by reason",
    labelnames=["model_name", "environment", "reason"],
)


class RequestRejected(BentoMLException):
    """A 4xx whose message tells the client what to fix."""

    def __init__(self, message: str, status: HTTPStatus, reason: str) -> None:
        super().__init__(message, error_code=status)
        REJECTED.labels(model_name=CONFIG.model_name, environment=CONFIG.environment, reason=reason).inc()


@bentoml.service(name="model-serving", workers=CONFIG.workers, traffic={"timeout": 30})
class ModelService:
    def __init__(self) -> None:
        self.holder = ModelHolder(CONFIG)
        self.holder.start()

    def __is_ready__(self) -> bool:
        return self.holder.model is not None

    @bentoml.api(route="/predict")
    def predict(self, instances: Instances, ctx: bentoml.Context) -> dict[str, Any]:
        model = self.holder.model
        if model is None:
            raise BentoMLException(
                f"model not loaded yet: {self.holder.last_error}", error_code=HTTPStatus.SERVICE_UNAVAILABLE
            )
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
        probabilities = model.predict_proba(np.asarray(instances, dtype=np.float64))
        predictions = (probabilities >= 0.5).astype(int)
        version = str(model.model_version)
        for predicted_class, count in zip(*np.unique(predictions, return_counts=True), strict=True):
            PREDICTIONS.labels(
                model_name=CONFIG.model_name,
                model_version=version,
                environment=CONFIG.environment,
                predicted_class=str(predicted_class),
            ).inc(int(count))
        ctx.response.headers["X-Model-Name"] = CONFIG.model_name
        ctx.response.headers["X-Model-Version"] = version
        return {
            "predictions": predictions.tolist(),
            "probabilities": [round(float(p), 6) if math.isfinite(p) else None for p in probabilities],
            "model": {"name": CONFIG.model_name, "version": model.model_version, "environment": CONFIG.environment},
        }

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
        }

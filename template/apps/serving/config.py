"""Serving configuration, from environment variables: the same ones locally and in the Deployment.

MLFLOW_TRACKING_URI      the environment's registry
MODEL_NAME               registered model, e.g. `prod.diagnosis`
MODEL_VERSION            pinned model version (from the stack file); unset: follow MODEL_ALIAS
MODEL_ALIAS              alias to follow when no version is pinned (default `champion`)
MODEL_REFRESH_SECONDS    how often to re-resolve a followed alias (0: load once)
SERVING_ENVIRONMENT      environment label on metrics and responses
MAX_BATCH_ROWS           largest batch one request may carry (413 above it)
MAX_REQUEST_BYTES        largest request body (413 above it; default 1 MiB)
REQUEST_BODY_TIMEOUT_SECONDS  time a client has to send a request head (else the connection is closed)
                         and then its whole body (else 408)
SERVING_WORKERS          BentoML worker processes (1 per core the pod gets; replicas scale out)
SERVING_ACCESS_LOG       one log line per request (off by default: it costs ~8 % of throughput)
SERVING_TRACING          OpenTelemetry spans per request (off by default: turn it on together with a
                         tracing exporter in BentoML's `tracing` settings; without one they are dropped)
DRIFT_SAMPLE_ROWS        rows of served input kept (a uniform sample) for drift checks
DRIFT_WINDOW_SECONDS     length of a sampling window: drift is judged on the last complete one
DRIFT_CHECK_SECONDS      how often the app recomputes its drift gauge (0: never)
DRIFT_ALPHA              KS p-value below which a feature counts as drifted
DRIFT_THRESHOLD          share of drifted features at which the sample counts as drifted
SHADOW_MODEL_VERSION     a candidate version scored beside the served one, answering nothing (from the
                         stack file's serving.shadow); unset: follow SHADOW_MODEL_ALIAS if that is set
SHADOW_MODEL_ALIAS       alias naming the candidate (the local environment: `shadow`); a missing alias
                         is no error, there is just nothing to shadow
SHADOW_SAMPLE_PCT        share of successful requests the candidate also scores (default 10)
SHADOW_QUEUE_SIZE        requests waiting for the candidate at most; more are dropped and counted
SHADOW_CPU_SHARE         the share of one core the candidate's process may use (default 0.1): it rests
                         after each batch in proportion, so it never eats the pod's CPU quota
SHADOW_PRIORITY          `idle` (default): the candidate runs only on CPU time nothing else wants;
                         `normal`: it competes fairly (a busy machine would otherwise starve it)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ServingConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str = Field(min_length=1)
    model_name: str = Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9]*(-[a-z0-9]+)*$")
    model_version: int | None = Field(default=None, ge=1)
    model_alias: str = Field(default="champion", pattern=r"^[a-z][a-z0-9_-]*$")
    refresh_seconds: float = Field(default=0, ge=0, le=3600)
    environment: str = Field(default="local", pattern=r"^[a-z][a-z0-9-]*$")
    max_batch_rows: int = Field(default=1000, ge=1, le=100_000)
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    body_timeout_seconds: float = Field(default=10, gt=0, le=300)
    workers: int = Field(default=1, ge=1, le=64)
    access_log: bool = False
    tracing: bool = False
    drift_sample_rows: int = Field(default=2000, ge=100, le=100_000)
    drift_window_seconds: float = Field(default=3600, ge=1, le=7 * 86_400)
    drift_check_seconds: float = Field(default=60, ge=0, le=86_400)
    drift_alpha: float = Field(default=0.01, gt=0, lt=1)
    drift_threshold: float = Field(default=0.2, gt=0, le=1)
    shadow_model_version: int | None = Field(default=None, ge=1)
    shadow_model_alias: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]*$")
    shadow_sample_pct: float = Field(default=10, gt=0, le=100)
    shadow_queue_size: int = Field(default=1000, ge=1, le=100_000)
    shadow_cpu_share: float = Field(default=0.1, gt=0, le=1)
    shadow_priority: Literal["idle", "normal"] = "idle"

    @property
    def shadowing(self) -> bool:
        return self.shadow_model_version is not None or self.shadow_model_alias is not None

    def shadow_config(self) -> ServingConfig:
        """The settings the candidate's holder loads it with (same registry and model, its own version)."""
        return self.model_copy(
            update={
                "model_version": self.shadow_model_version,
                "model_alias": self.shadow_model_alias or self.model_alias,
                "refresh_seconds": 0 if self.shadow_model_version else (self.refresh_seconds or 30),
                "shadow_model_version": None,
                "shadow_model_alias": None,
            }
        )

    @model_validator(mode="after")
    def _shadow_differs(self) -> ServingConfig:
        if self.shadow_model_version is not None and self.shadow_model_version == self.model_version:
            raise ValueError("SHADOW_MODEL_VERSION: the shadow must be another version than MODEL_VERSION")
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingConfig:
        env = os.environ if environ is None else environ
        names = {
            "tracking_uri": "MLFLOW_TRACKING_URI",
            "model_name": "MODEL_NAME",
            "model_version": "MODEL_VERSION",
            "model_alias": "MODEL_ALIAS",
            "refresh_seconds": "MODEL_REFRESH_SECONDS",
            "environment": "SERVING_ENVIRONMENT",
            "max_batch_rows": "MAX_BATCH_ROWS",
            "max_request_bytes": "MAX_REQUEST_BYTES",
            "body_timeout_seconds": "REQUEST_BODY_TIMEOUT_SECONDS",
            "workers": "SERVING_WORKERS",
            "access_log": "SERVING_ACCESS_LOG",
            "tracing": "SERVING_TRACING",
            "drift_sample_rows": "DRIFT_SAMPLE_ROWS",
            "drift_window_seconds": "DRIFT_WINDOW_SECONDS",
            "drift_check_seconds": "DRIFT_CHECK_SECONDS",
            "drift_alpha": "DRIFT_ALPHA",
            "drift_threshold": "DRIFT_THRESHOLD",
            "shadow_model_version": "SHADOW_MODEL_VERSION",
            "shadow_model_alias": "SHADOW_MODEL_ALIAS",
            "shadow_sample_pct": "SHADOW_SAMPLE_PCT",
            "shadow_queue_size": "SHADOW_QUEUE_SIZE",
            "shadow_cpu_share": "SHADOW_CPU_SHARE",
            "shadow_priority": "SHADOW_PRIORITY",
        }
        raw = {field: env[var] for field, var in names.items() if env.get(var) not in (None, "")}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{names[str(e['loc'][0])]}: {e['msg']}" if e["loc"] else e["msg"].removeprefix("Value error, ")
                for e in exc.errors()
            )
            raise ValueError(f"invalid serving configuration: {problems}") from None

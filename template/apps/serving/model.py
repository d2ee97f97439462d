"""Load the configured model version from the registry, once or following an alias, off the request path."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.serving.config import ServingConfig

log = logging.getLogger(__name__)
# Requests carry arrays in the training column order; sklearn would warn on every call otherwise.
warnings.filterwarnings("ignore", message="X does not have valid feature names")


@dataclass(frozen=True)
class LoadedModel:
    estimator: Any
    model_version: int
    registry_version: int
    n_features: int
    feature_names: tuple[str, ...]

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(rows))[:, 1]


class ModelHolder:
    """Holds the current model; a background thread loads it (and re-resolves a followed alias)."""

    def __init__(self, config: ServingConfig, poll_seconds: float = 2.0) -> None:
        self.config = config
        self.poll_seconds = poll_seconds
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.last_error: str | None = None

    @property
    def model(self) -> LoadedModel | None:
        return self._model

    def start(self) -> None:
        threading.Thread(target=self._run, name="model-loader", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import mlflow.sklearn  # noqa: F401, PLC0415 -- import while waiting for a model, not when it arrives
        import skops.io  # noqa: F401, PLC0415 -- MLflow 3 stores sklearn models in the (safe) skops format

        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model not loaded yet: %s", self.last_error)
            wait = self.poll_seconds if self._model is None else self.config.refresh_seconds
            if self._model is not None and wait == 0:
                return
            self._stop.wait(wait)

    def refresh(self) -> bool:
        """Resolve the configured version; load it if it differs from the one held. True if it changed."""
        from pipelines.registry import champion, client_for, find_by_model_version  # noqa: PLC0415

        client = client_for(self.config.tracking_uri)
        if self.config.model_version is not None:
            info = find_by_model_version(client, self.config.model_name, self.config.model_version)
            wanted = f"model version {self.config.model_version}"
        else:
            info = champion(client, self.config.model_name)
            wanted = f"alias {self.config.model_alias}"
        if info is None:
            raise LookupError(f"{self.config.model_name} has no {wanted} yet")
        current = self._model
        if current is not None and current.registry_version == info.registry_version:
            return False
        self._load(info.registry_version, info.model_version)
        return True

    def _load(self, registry_version: int, model_version: int) -> None:
        import mlflow  # noqa: PLC0415

        started = time.monotonic()
        from pipelines.registry import client_for  # noqa: PLC0415

        client = client_for(self.config.tracking_uri)
        location = client.get_model_version_download_uri(self.config.model_name, str(registry_version))
        mlflow.set_tracking_uri(self.config.tracking_uri)
        estimator = mlflow.sklearn.load_model(location)
        names = tuple(str(n) for n in getattr(estimator, "feature_names_in_", ()))
        loaded = LoadedModel(estimator, model_version, registry_version, int(estimator.n_features_in_), names)
        with self._lock:
            self._model = loaded
        self.last_error = None
        log.info(
            "serving %s model version %s (registry version %s), loaded in %.1fs",
            self.config.model_name,
            model_version,
            registry_version,
            time.monotonic() - started,
        )

"""Load the configured model version from the registry, once or following an alias, off the request path.

A scaler + logistic-regression pipeline (the reference model) is compiled at load time to one
weight vector and an intercept, so a prediction is a dot product instead of a pass through
scikit-learn's validation (about 11 µs instead of 1 ms for one row). The compiled form is checked
against the estimator on probe rows before it is used; any other estimator is served as it is.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.serving.config import ServingConfig
from apps.serving.drift import REFERENCE_FILE, Reference

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
    linear: tuple[np.ndarray, float] | None = None
    reference: Reference | None = None

    @classmethod
    def of(
        cls, estimator: Any, model_version: int, registry_version: int, reference: Reference | None = None
    ) -> LoadedModel:
        """A fitted estimator made ready to serve (compiled when it is the simple linear kind)."""
        names = tuple(str(n) for n in getattr(estimator, "feature_names_in_", ()))
        n_features = int(estimator.n_features_in_)
        return cls(estimator, model_version, registry_version, n_features, names, compile_linear(estimator), reference)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        if self.linear is not None:
            weights, intercept = self.linear
            return 1.0 / (1.0 + np.exp(-(rows @ weights + intercept)))
        return np.asarray(self.estimator.predict_proba(rows))[:, 1]


def compile_linear(estimator: Any, tolerance: float = 1e-9) -> tuple[np.ndarray, float] | None:
    """(weights, intercept) equal to `estimator.predict_proba(x)[:, 1]`, or None if it is not that simple."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    steps = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    *scalers, classifier = steps
    if not isinstance(classifier, LogisticRegression) or classifier.coef_.shape[0] != 1:
        return None
    if not all(isinstance(s, StandardScaler) for s in scalers):
        return None
    weights, intercept = classifier.coef_[0].astype(np.float64), float(classifier.intercept_[0])
    for scaler in reversed(scalers):  # w·((x - mean) / scale) + b  ==  (w / scale)·x + (b - w·mean / scale)
        scale = scaler.scale_ if scaler.scale_ is not None else 1.0
        mean = scaler.mean_ if scaler.mean_ is not None else 0.0
        weights = weights / scale
        intercept = intercept - float(np.sum(weights * mean))
    n = int(estimator.n_features_in_)
    probes = np.vstack([np.zeros(n), np.ones(n), np.random.default_rng(0).normal(0, 1, (8, n))])
    first = scalers[0] if scalers else None
    if first is not None and first.mean_ is not None:  # also probe around the data the model was fitted on
        spread = first.scale_ if first.scale_ is not None else 1.0
        probes = np.vstack([probes, first.mean_ + probes * spread])
    expected = np.asarray(estimator.predict_proba(probes))[:, 1]
    actual = 1.0 / (1.0 + np.exp(-(probes @ weights + intercept)))
    return (weights, intercept) if float(np.max(np.abs(expected - actual))) <= tolerance else None


def settle_heap() -> None:
    """Collect, then freeze every object alive now (the imports of MLflow, scikit-learn and BentoML,
    the model) out of the garbage collector's sight. Without it each full collection walked about a
    million long-lived objects and stopped every request for 250-450 ms; after it, full collections
    only walk what requests allocated since. Run after each model load: the one collection it makes
    (unfreezing first, so that a replaced model can be freed) is the only pause, once per new version."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelHolder:
    """Holds the current model; a background thread loads it (and re-resolves a followed alias)."""

    def __init__(self, config: ServingConfig, poll_seconds: float = 2.0, *, optional: bool = False) -> None:
        self.config = config
        self.poll_seconds = poll_seconds
        # Optional (a shadow): no version to load is a normal state, not a warning, and a followed alias
        # that goes away unloads the model.
        self.optional = optional
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
            except LookupError as exc:
                self.last_error = str(exc)
                if self.optional:
                    self._forget()
                else:
                    log.warning("model not loaded yet: %s", self.last_error)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("model not loaded yet: %s", self.last_error)
            wait = self.poll_seconds if self._model is None else self.config.refresh_seconds
            if self._model is not None and wait == 0:
                return
            self._stop.wait(wait)

    def refresh(self) -> bool:
        """Resolve the configured version; load it if it differs from the one held. True if it changed."""
        from core.registry import by_alias, client_for, find_by_model_version  # noqa: PLC0415

        client = client_for(self.config.tracking_uri)
        if self.config.model_version is not None:
            info = find_by_model_version(client, self.config.model_name, self.config.model_version)
            wanted = f"model version {self.config.model_version}"
        else:
            info = by_alias(client, self.config.model_name, self.config.model_alias)
            wanted = f"alias {self.config.model_alias}"
        if info is None:
            raise LookupError(f"{self.config.model_name} has no {wanted} yet")
        current = self._model
        if current is not None and current.registry_version == info.registry_version:
            return False
        self._load(info.registry_version, info.model_version)
        return True

    def hold(self, loaded: LoadedModel) -> None:
        """Serve `loaded` from now on (what a load ends with)."""
        with self._lock:
            self._model = loaded
        self.last_error = None
        settle_heap()

    def _forget(self) -> None:
        if self._model is not None:
            log.info("%s: no version to hold any more (%s)", self.config.model_name, self.last_error)
        with self._lock:
            self._model = None

    def _load(self, registry_version: int, model_version: int) -> None:
        import mlflow  # noqa: PLC0415

        started = time.monotonic()
        from core.registry import client_for  # noqa: PLC0415

        client = client_for(self.config.tracking_uri)
        location = client.get_model_version_download_uri(self.config.model_name, str(registry_version))
        mlflow.set_tracking_uri(self.config.tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp))
            estimator = mlflow.sklearn.load_model(str(local))
            reference = Reference.load(local / REFERENCE_FILE) if (local / REFERENCE_FILE).is_file() else None
        loaded = LoadedModel.of(estimator, model_version, registry_version, reference)
        self.hold(loaded)
        log.info(
            "serving %s model version %s (registry version %s), loaded in %.1fs (%s path; drift reference: %s)",
            self.config.model_name,
            model_version,
            registry_version,
            time.monotonic() - started,
            "compiled linear" if loaded.linear is not None else "estimator",
            f"{len(reference.features)} rows" if reference is not None else "none in the artifacts",
        )

"""How `mlops local up` starts each server: the command, its environment, its log (a mixin of
`LocalEnvironment`, which holds the state directory and the model)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from core.errors import EnvironmentProblem
from pipelines.common.procs import LOOPBACK, Proc, serving_command, spawn
from pipelines.local import objectstore

BUCKET_PREFIX = "mlops-local"


class ServerStarters:
    root: Path
    home: Path
    logs: Path
    model: str
    progress: Callable[[str], None]
    images: dict[str, str]  # app -> image, when the apps run from their images (`--containers`)

    def _bin(self, name: str) -> str:
        path = Path(sys.executable).parent / name
        if not path.exists():
            raise EnvironmentProblem(f"{name} is not installed in {path.parent}", hint="run `make install`")
        return str(path)

    def _base_env(self) -> dict[str, str]:
        return {
            # Servers cache their bytecode in .venv (see pipelines/__init__.py): later starts are ~3x faster.
            "PYTHONDONTWRITEBYTECODE": "",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "BENTOML_DO_NOT_TRACK": "true",
            "DO_NOT_TRACK": "true",
            "PYTHONUNBUFFERED": "1",
            "MLOPS_LOCAL_HOME": str(self.home),  # which state directory a process belongs to (`ps e`, tests)
        }

    @property
    def dev_store(self) -> str:
        """The dev bucket: dev's training artifacts and the datasets (`mlops data`) live there."""
        return f"s3://{objectstore.bucket(BUCKET_PREFIX, 'dev')}"

    def _ensure_experiment(self, tracking_uri: str) -> None:
        from core.registry import client_for  # noqa: PLC0415

        client = client_for(tracking_uri)
        if client.get_experiment_by_name("training") is None:
            client.create_experiment("training", artifact_location=f"{self.dev_store}/training")

    def _spawn(self, name: str, command: list[str], port: int, env: dict[str, str]) -> Proc:
        url = f"http://{LOOPBACK}:{port}"
        return spawn(name, command, port=port, log=self.logs / f"{name}.log", url=url, env=env, cwd=self.root)

    def _start_object_store(self, port: int, _services: dict[str, Proc]) -> Proc:
        self.progress(f"starting the S3-compatible object store (SeaweedFS) on {LOOPBACK}:{port}")
        if holders := objectstore.stores_using(self.home / "store"):
            raise EnvironmentProblem(
                f"another object store (pid {holders[0]}) serves {self.home / 'store'}, and this state does not "
                "record it (its state file was lost or replaced), so it is left alone",
                hint=f"if it is a leftover of this checkout, stop it (`kill {holders[0]}`) and run this again",
            )
        command = objectstore.store_command(self._bin("weed"), port, self.home / "store")
        return self._spawn(
            "object_store", command, port, {**self._base_env(), **objectstore.client_env(port), **objectstore.STORE_ENV}
        )

    def _start_tracking(self, port: int, services: dict[str, Proc]) -> Proc:
        from apps.tracking.server import SERVER_ENV, server_command  # noqa: PLC0415

        if self.images:
            return self._start_tracking_container(port, services, self.images)  # type: ignore[attr-defined]

        self.progress(f"starting the MLflow tracking server on {LOOPBACK}:{port}")
        command = server_command(
            self._bin("mlflow"),
            LOOPBACK,
            port,
            backend_store_uri=f"sqlite:///{self.home / 'mlflow.db'}",
            artifact_root=f"s3://{objectstore.bucket(BUCKET_PREFIX, 'dev')}/mlflow",
        )
        env = {**self._base_env(), **objectstore.client_env(services["object_store"].port), **SERVER_ENV}
        return self._spawn("tracking", command, port, env)

    def _start_serving(self, port: int, services: dict[str, Proc]) -> Proc:
        from core.registry import registered_name  # noqa: PLC0415

        if not self.images:
            self.progress(f"starting BentoML serving on {LOOPBACK}:{port} (it loads the prod model when there is one)")
        command = [*serving_command(Path(self._bin("bentoml")).parent, port), "--working-dir", str(self.root)]
        env = {
            **self._base_env(),
            **objectstore.client_env(services["object_store"].port),
            "MLFLOW_TRACKING_URI": services["tracking"].url,
            "MODEL_NAME": registered_name("prod", self.model),
            "MODEL_REFRESH_SECONDS": "2",
            "SERVING_ENVIRONMENT": "local",
            "DRIFT_CHECK_SECONDS": "5",  # quick feedback on a laptop; the clusters use the default (60)
            # Whatever the alias `shadow` names is scored beside prod's champion on every request
            # (`mlops local promote … --to prod --shadow`); with no such alias there is nothing to shadow.
            "SHADOW_MODEL_ALIAS": "shadow",
            "SHADOW_SAMPLE_PCT": "100",
            "BENTOML_HOME": str(self.home / "bentoml"),
        }
        if self.images:
            return self._start_serving_container(port, env, self.images)  # type: ignore[attr-defined]
        return self._spawn("serving", command, port, env)

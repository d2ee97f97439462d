"""`mlops local up --containers`: tracking and serving from the built images instead of host processes
(a mixin of `LocalEnvironment`). The object store stays a host process: the images are the apps'.

Each container runs as its pod runs it (`pipelines/images/pods.py`: the planned pod's user,
read-only root, its emptyDir volumes as tmpfs, no capabilities), on the host network with the app bound
to 127.0.0.1. `podman run` stays in the foreground, so the container is supervised, logged and stopped
like any other server; the spawn's token is passed in, so `stop` reaches the app's own processes too.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from infra.config import load_stack
from infra.naming import IMAGES
from pipelines.common.procs import LOOPBACK, SPAWN_VARIABLE, Proc, serving_command
from pipelines.containers import pods
from pipelines.local import objectstore

IMAGE_BIN = Path("/opt/venv/bin")
# The pods' user (infra/k8s/objects.py); the tracking container keeps its SQLite registry in the state
# directory, which is mounted at the same path.
APP_UID = 10001


class ContainerStarters:
    root: Path
    home: Path
    model: str
    containers: bool
    images: dict[str, str]
    state_file: Path
    progress: Callable[[str], None]
    _base_env: Callable[[], dict[str, str]]
    _spawn: Callable[[str, list[str], int, dict[str, str]], Proc]

    def _recorded(self) -> dict[str, Any]:
        """The state file's own keys (how the apps run: `containers`, `images`); {} when there is none."""
        try:
            raw = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return raw if isinstance(raw, dict) else {}

    def _mode(self) -> dict[str, Any]:
        return {"model": self.model, "containers": self.containers, "images": self.images}

    def container_name(self, app: str) -> str:
        return f"mlops-{hashlib.sha256(str(self.home).encode()).hexdigest()[:10]}-{app}"

    @property
    def owner(self) -> str:
        return str(self.home)

    def built_images(self) -> dict[str, str]:
        """The images of this checkout's HEAD, built now (a cached build takes seconds)."""
        from pipelines.containers.builds import build_all  # noqa: PLC0415

        built = build_all(self.root, IMAGES, progress=self.progress)
        return {b.image: b.tag for b in built}

    def remove_containers(self, keep: Sequence[str] = ()) -> list[str]:
        """Stop and remove what is left of this environment's containers but `keep` (never another's)."""
        return [app for app in IMAGES if app not in keep and pods.remove(self.container_name(app), self.owner)]

    def _pods(self, images: dict[str, str]) -> dict[str, tuple[dict, dict]]:
        settings = load_stack(self.root, "local")
        return pods.planned_pods(images, settings.serving, settings.tracking)

    def _run_container(
        self, app: str, port: int, images: dict[str, str], command: list[str], env: dict[str, str], **extra: list[str]
    ) -> Proc:
        pods.remove(self.container_name(app), self.owner)  # a leftover of a killed run
        pod, container = self._pods(images)[app]
        run = pods.run_command(
            images[app],
            self.container_name(app),
            pod,
            container,
            owner=self.owner,
            command=command,
            env=env,
            inherit=[SPAWN_VARIABLE],
            **extra,
        )
        return self._spawn(app, run, port, {k: v for k, v in self._base_env().items() if k != "PATH"})

    def _start_tracking_container(self, port: int, services: dict[str, Proc], images: dict[str, str]) -> Proc:
        from apps.tracking.server import SERVER_ENV, server_command  # noqa: PLC0415

        self.progress(f"starting the MLflow tracking server from {images['tracking']} on {LOOPBACK}:{port}")
        command = server_command(
            IMAGE_BIN / "mlflow",
            LOOPBACK,
            port,
            backend_store_uri=f"sqlite:///{self.home / 'mlflow.db'}",
            artifact_root=f"s3://{objectstore.bucket('mlops-local', 'dev')}/mlflow",
        )
        pods.writable_by(self.home, APP_UID)
        extra = [] if os.geteuid() == 0 else ["--userns", f"keep-id:uid={APP_UID},gid={APP_UID}"]
        env = {**objectstore.client_env(services["object_store"].port), **SERVER_ENV}
        return self._run_container(
            "tracking", port, images, command, env, mounts=[f"{self.home}:{self.home}:rw"], extra=extra
        )

    def _start_serving_container(self, port: int, env: dict[str, str], images: dict[str, str]) -> Proc:
        self.progress(f"starting BentoML serving from {images['serving']} on {LOOPBACK}:{port}")
        inside = {k: v for k, v in env.items() if k not in ("PATH", "PYTHONDONTWRITEBYTECODE", "MLOPS_LOCAL_HOME")}
        inside["BENTOML_HOME"] = "/tmp/bentoml"  # noqa: S108 -- the pod's emptyDir, as in the Deployment
        return self._run_container("serving", port, images, serving_command(IMAGE_BIN, port), inside)

"""A real MLflow tracking server on loopback for a test module, started as the platform starts it
(`apps/tracking/server.py`), stopped with its whole process group."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from apps.tracking.server import SERVER_ENV, server_command
from pipelines.common.procs import LOOPBACK, Proc, choose_port, spawn, stop, wait_http


@contextmanager
def tracking_server(
    home: Path, name: str, extra_args: Sequence[str] = (), extra_env: Mapping[str, str] | None = None
) -> Iterator[Proc]:
    """A server with its store in `home` (sqlite + a directory), ready when this yields."""
    port = choose_port(0, name)
    bin_dir = Path(sys.executable).parent
    command = server_command(
        bin_dir / "mlflow",
        LOOPBACK,
        port,
        backend_store_uri=f"sqlite:///{home / 'mlflow.db'}",
        artifact_root=str(home / "artifacts"),
    )
    env = {
        **SERVER_ENV,
        "PYTHONDONTWRITEBYTECODE": "",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        **(extra_env or {}),
    }
    proc = spawn(
        name,
        [*command, *extra_args],
        port=port,
        log=home / "server.log",
        url=f"http://{LOOPBACK}:{port}",
        env=env,
        cwd=home,
    )
    try:
        wait_http(proc, "/health", timeout=120)
        yield proc
    finally:
        stop(proc)

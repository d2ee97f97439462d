"""The apps' images built and run for real with podman (every test here is an integration test).

One build per run, shared by every test: on the public bases where a registry can be reached, else on
the locally made ones (cached per machine; see pipelines/images/engine.py). Without podman the tests
fail, naming what to install: they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.common.procs import LOOPBACK, free_port
from pipelines.containers import engine
from pipelines.containers.builds import build_all
from tests.conftest import ROOT

REGISTRY = "/usr/bin/docker-registry"


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent.name == "containers":
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def built() -> dict[str, engine.Built]:
    """Every image of this checkout, built once per run."""
    if shutil.which("podman") is None:
        pytest.fail(f"podman is required by the image tests: {engine.INSTALL_HINT}")
    return {b.image: b for b in build_all(ROOT, progress=print)}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A registry on 127.0.0.1 (Debian's `docker-registry`, the CNCF distribution registry): `host:port`."""
    if not Path(REGISTRY).is_file():
        pytest.fail(f"{REGISTRY} is required by the image tests: `apt-get install docker-registry`")
    home = tmp_path_factory.mktemp("registry")
    address = f"{LOOPBACK}:{free_port()}"
    config = home / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {home / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    with (home / "log").open("wb") as log:
        process = subprocess.Popen(
            [REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (home / "log").read_text()
            time.sleep(0.2)
        yield address
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)

"""Dataset stores for the tests: a directory (fast, every variant), and the real local object store."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.common.procs import free_port, stop
from pipelines.local import objectstore

BUCKET = "datasets-test"


def frame(rows: int = 400, seed: int = 0, shift: float = 0.0, **columns: Any) -> pa.Table:
    """Three numeric features, a category and a 0/1 label; `shift` moves x1; `columns` replaces or adds."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {
        "x1": rng.normal(shift, 1, rows),
        "x2": rng.normal(5, 2, rows),
        "count": rng.integers(0, 10, rows),
        "colour": rng.choice(["red", "green", "blue"], rows),
        "label": rng.integers(0, 2, rows),
    }
    data.update(columns)
    return pa.table({k: v for k, v in data.items() if v is not None})


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, Any, str]]:
    """`mlops ARGS -f json` in this process: (exit code, the JSON it printed or None, what it printed to stderr)."""

    def run(*args: str) -> tuple[int, Any, str]:
        code = main([*args, "-f", "json"])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if out.strip() else None), err

    return run


@pytest.fixture
def directory_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "store"
    monkeypatch.setenv("MLOPS_DATA_STORE", str(store))
    return store


@pytest.fixture(scope="module")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The local environment's object store (SeaweedFS on loopback), alone, with an empty bucket; its port."""
    home = tmp_path_factory.mktemp("object-store")
    proc, _ = objectstore.start_alone(home, free_port())
    try:
        objectstore.s3_client(proc.port).create_bucket(Bucket=BUCKET)
        yield proc.port
    finally:
        stop(proc)


@pytest.fixture
def s3_store(object_store: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLOPS_DATA_STORE and the S3 client settings pointing at `object_store`'s bucket (a prefix per test)."""
    for name, value in objectstore.client_env(object_store).items():
        monkeypatch.setenv(name, value)
    uri = f"s3://{BUCKET}/{os.urandom(4).hex()}"
    monkeypatch.setenv("MLOPS_DATA_STORE", uri)
    return uri

"""Where a new dataset version comes from: a Parquet or CSV file, or one of scikit-learn's bundled datasets;
and which store it goes to: an explicit URI, or the local environment's bucket of an environment."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from core.datasets.store import DatasetStore
from core.errors import BadInput, EnvironmentProblem
from pipelines.local import objectstore
from pipelines.local.environment import LocalEnvironment
from pipelines.local.servers import BUCKET_PREFIX

STORE_VARIABLE = "MLOPS_DATA_STORE"
# scikit-learn's datasets that ship with it (no download); their label column is `target`.
SKLEARN = ("breast_cancer", "iris", "wine", "diabetes")
SKLEARN_LABEL = "target"


def read_file(path: Path) -> pa.Table:
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.ParquetFile(path).read()
        if suffix == ".csv":
            return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise BadInput(f"{path} cannot be read as {suffix[1:].upper()}: {error}") from None
    raise BadInput(f"{path}: a dataset is a .parquet or .csv file (not {suffix or 'no extension'})")


def read_sklearn(name: str) -> pa.Table:
    if name not in SKLEARN:
        raise BadInput(
            f"--from-sklearn {name!r} is not one of scikit-learn's bundled datasets", hint=", ".join(SKLEARN)
        )
    from sklearn import datasets  # noqa: PLC0415 -- heavy

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame
    frame.columns = [str(c) for c in frame.columns]
    return pa.Table.from_pandas(frame, preserve_index=False)


def local_store_uri(environment: LocalEnvironment, env: str) -> str:
    """The local environment's bucket of `env`; points this process's S3 clients at the running store."""
    store = environment.state().get("object_store")
    if store is None or not store.alive():
        raise EnvironmentProblem(
            "the local object store is not running",
            hint="start it with `mlops local up`, or name a store with --store (s3://BUCKET, gs://BUCKET, a path)",
        )
    os.environ.update(objectstore.client_env(store.port))
    return f"s3://{objectstore.bucket(BUCKET_PREFIX, env)}"


def open_store(environment: LocalEnvironment, env: str, store: str | None) -> DatasetStore:
    """`--store URI` (or MLOPS_DATA_STORE: a cloud environment's bucket, its `bucket` stack output), else the
    local environment's bucket of `--env`."""
    if env not in objectstore.ENVIRONMENTS:
        raise BadInput(f"--env {env!r} is not an environment", hint=", ".join(objectstore.ENVIRONMENTS))
    uri = store or os.environ.get(STORE_VARIABLE)
    return DatasetStore(uri or local_store_uri(environment, env))

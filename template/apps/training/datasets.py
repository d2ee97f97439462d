"""Training data from a dataset version (`--dataset NAME@VERSION`): read with every file's SHA-256 checked
(core/datasets), its features computed by the dataset's feature module (apps/training/features) and stored
as a version of `<name>-features`, whose manifest names the source version and the feature code's SHA."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from apps.training.data import load_frame
from apps.training.features import FeatureCode, FeatureError, code_for, compute
from core.datasets.manifest import Manifest
from core.datasets.store import DatasetStore
from core.errors import BadInput

STORE_VARIABLE = "MLOPS_DATA_STORE"  # the environment's bucket (`s3://…`, `gs://…`), as `mlops data` reads it
BUNDLED_SOURCE = "sklearn:breast_cancer"


@dataclass(frozen=True)
class TrainingData:
    store: str
    source: Manifest
    features: Manifest
    code: FeatureCode
    frame: pd.DataFrame  # the feature columns and the label

    @property
    def label(self) -> str:
        return self.source.label

    def tags(self) -> dict[str, str]:
        """The lineage every run and model version trained on it carries (what `mlops data show` and the
        model policies look up)."""
        return {
            "dataset_name": self.source.name,
            "dataset_version": str(self.source.version),
            "dataset_sha256": self.source.sha256,
            "dataset_store": self.store,
            "features_dataset": self.features.ref,
            "features_sha256": self.features.sha256,
            "feature_code": self.code.module,
            "feature_code_sha": self.code.sha,
        }


def store_uri(explicit: str | None) -> str:
    uri = explicit or os.environ.get(STORE_VARIABLE)
    if not uri:
        raise BadInput(
            "--dataset needs a store: --store s3://BUCKET (or gs://BUCKET, a path), or MLOPS_DATA_STORE",
            hint="`mlops train --dataset …` finds the local environment's bucket by itself",
        )
    return uri


def load(
    reference: str, store: str | None, git_sha: str, progress: Callable[[str], None] = lambda _: None
) -> TrainingData:
    uri = store_uri(store)
    datasets = DatasetStore(uri)
    source = datasets.resolve(reference)
    progress(f"reading {source.ref} ({source.rows:,} rows, every file's SHA-256 checked)")
    frame = datasets.read(source).to_pandas()
    code = code_for(source.name)
    try:
        computed = compute(code, frame, source.label)
    except (FeatureError, ValueError) as error:
        raise BadInput(f"the features of {source.ref} cannot be computed: {error}") from None
    del frame
    progress(f"computed {len(computed.columns) - 1} feature(s) with {code.module} ({code.sha[:12]})")
    features, _ = datasets.add(
        pa.Table.from_pandas(computed, preserve_index=False),
        f"{source.name}-features",
        label=source.label,
        source=f"{source.ref} ({source.sha256})",
        allow_schema_change=True,  # the feature code decides the schema; its SHA is in the manifest
        metadata={
            "source_dataset": source.ref,
            "source_sha256": source.sha256,
            "feature_code": code.module,
            "feature_code_sha": code.sha,
            "git_sha": git_sha,
        },
        progress=progress,
    )
    return TrainingData(uri, source, features, code, computed)


def latest_or_bundled(
    store: str, name: str, git_sha: str, progress: Callable[[str], None] = lambda _: None
) -> TrainingData:
    """The latest version of dataset `name`, loaded for training; when it has none, the bundled data added as
    its first version. What `mlops local up` trains on: versions you add with `mlops data add --name NAME`
    take over from the bundled one."""
    datasets = DatasetStore(store)
    if not datasets.versions(name):
        features, target = load_frame()
        table = pa.Table.from_pandas(features.assign(target=target), preserve_index=False)
        datasets.add(table, name, label="target", source=BUNDLED_SOURCE, progress=progress)
    return load(f"{name}@latest", store, git_sha, progress)


def binary_target(data: TrainingData) -> pd.Series:
    """The label as 0/1 (the reference model is a binary classifier), or a refusal naming the column."""
    target = data.frame[data.label]
    values = sorted(pd.unique(target).tolist())
    if not set(values) <= {0, 1} or len(values) != 2:
        shown = ", ".join(map(str, values[:6])) + (" …" if len(values) > 6 else "")
        raise BadInput(
            f"the label column {data.label!r} of {data.source.ref} holds {len(values)} value(s) ({shown}); "
            "the reference model is a binary classifier and needs exactly 0 and 1"
        )
    return target.astype("int64")

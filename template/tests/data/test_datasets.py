"""`mlops data`: versions written, listed, shown, compared, pulled and checked, in a directory store (the
same code as the object stores', through Arrow's local file system; tests/data/test_object_store.py runs
it against the real S3-compatible store)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.datasets import store as store_module
from core.datasets.store import DatasetStore
from core.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK
from tests.data.conftest import frame, write

Cli = Callable[..., tuple[int, Any, str]]


def _versions(store: Path, name: str) -> list[int]:
    return [m.version for m in DatasetStore(str(store)).versions(name)] if store.exists() else []


def _directories(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*")) if store.exists() else []


def test_a_bundled_dataset_round_trips(cli: Cli, directory_store: Path, tmp_path: Path) -> None:
    code, added, _ = cli("data", "add", "--from-sklearn", "breast_cancer", "--name", "diagnosis")
    assert code == EXIT_OK and added["created"] and added["version"] == 1
    assert (added["rows"], len(added["columns"]), added["label"], added["source"]) == (
        569,
        31,
        "target",
        "sklearn:breast_cancer",
    )
    assert added["parent"] is None and added["created_by"]
    code, again, _ = cli("data", "add", "--from-sklearn", "breast_cancer", "--name", "diagnosis")
    assert code == EXIT_OK and not again["created"] and again["sha256"] == added["sha256"], (
        "the same data is the same version"
    )
    assert _versions(directory_store, "diagnosis") == [1]

    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True).frame
    code, shown, _ = cli("data", "show", "diagnosis@latest")
    assert code == EXIT_OK
    radius = shown["stats"]["mean radius"]
    assert radius["mean"] == pytest.approx(data["mean radius"].mean()) and radius["std"] == pytest.approx(
        data["mean radius"].std()
    )
    assert (radius["min"], radius["max"], radius["nulls"]) == (data["mean radius"].min(), data["mean radius"].max(), 0)
    assert {c["name"]: c["dtype"] for c in shown["columns"]}["target"] == "int64"

    code, _, _ = cli("data", "pull", "diagnosis@1", "-o", str(tmp_path / "copy"))
    assert code == EXIT_OK
    copy = tmp_path / "copy"
    manifest = json.loads((copy / "manifest.json").read_text())
    for part in [*manifest["files"], manifest["sample"]]:
        assert hashlib.sha256((copy / part["path"]).read_bytes()).hexdigest() == part["sha256"]
    table = pa.concat_tables(pq.read_table(copy / p["path"]) for p in manifest["files"])
    assert table.to_pandas().equals(data), "the pulled rows are the rows added"
    assert pq.read_table(copy / "sample.parquet").num_rows == 569


def test_versions_chain_and_every_way_to_name_one(cli: Cli, directory_store: Path, tmp_path: Path) -> None:
    first = cli(
        "data", "add", str(write(frame(seed=1), tmp_path / "a.parquet")), "--name", "churn", "--label", "label"
    )[1]
    second = cli("data", "add", str(write(frame(seed=2), tmp_path / "b.csv")), "--name", "churn", "--label", "label")[1]
    assert (second["version"], second["parent"], second["parent_version"]) == (2, first["sha256"], 1)
    for reference, version in [("churn", 2), ("churn@latest", 2), ("churn@1", 1), (f"churn@{first['sha256'][:8]}", 1)]:
        code, shown, err = cli("data", "show", reference)
        assert code == EXIT_OK and shown["version"] == version, (reference, err)
    code, listed, _ = cli("data", "list", "churn")
    assert [v["version"] for v in listed] == [1, 2]
    code, everything, _ = cli("data", "list")
    assert [(v["name"], v["version"]) for v in everything] == [("churn", 2)], "one line per dataset: its latest"
    for reference, message in [
        ("churn@7", "matches no version of churn"),
        ("churn@zz", "the version is `latest`, a number or a SHA-256 prefix"),
        ("churn@abcdef0", "matches no version"),
        ("ghost", "dataset 'ghost' has no version"),
        ("Bad_Name", "dataset name 'Bad_Name' is not valid"),
    ]:
        code, _, err = cli("data", "show", reference)
        assert code == EXIT_BAD_INPUT and message in " ".join(err.split()), (reference, err)


def test_diff_names_the_shifted_column_and_the_schema_changes(cli: Cli, directory_store: Path, tmp_path: Path) -> None:
    cli(
        "data",
        "add",
        str(write(frame(rows=2000, seed=1), tmp_path / "a.parquet")),
        "--name",
        "churn",
        "--label",
        "label",
    )
    moved = frame(rows=2000, seed=2, shift=1.5, extra=np.arange(2000))
    code, _, err = cli("data", "add", str(write(moved, tmp_path / "b.parquet")), "--name", "churn", "--label", "label")
    assert code == EXIT_OK, err
    code, diff, _ = cli("data", "diff", "churn@1", "@2")
    assert code == EXIT_OK
    assert diff["shifted"] == ["x1"], "x1 moved by 1.5 standard deviations, x2 and count did not"
    assert diff["added"] == ["extra"] and diff["dropped"] == [] and diff["retyped"] == {}
    x1 = next(s for s in diff["shifts"] if s["column"] == "x1")
    assert x1["shift_std"] == pytest.approx(1.5, abs=0.15) and x1["p_value"] < 1e-6


def _nan_at(values: np.ndarray, index: int, value: float) -> np.ndarray:
    values = values.astype(float)
    values[index] = value
    return values


BAD_TABLES = [
    (frame(rows=0), "the data is empty"),
    (frame(label=None), "the label column 'label' is not in the data"),
    (frame(x2=_nan_at(np.ones(400), 3, np.nan)), "column 'x2' is numeric but has 1 missing or non-finite"),
    (frame(x1=_nan_at(np.ones(400), 0, np.inf)), "column 'x1' is numeric but has 1 missing or non-finite"),
    (
        frame(colour=pa.array(["a"] * 399 + [None]), label=pa.array([0] * 399 + [None])),
        "column 'label' is numeric but has 1",
    ),
    (
        pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([0, 1]), pa.array([3.0, 4.0])], names=["x", "label", "x"]),
        "column 'x' appears more than once",
    ),
]


@pytest.mark.parametrize(
    ("table", "message"), BAD_TABLES, ids=["empty", "no-label", "nan", "inf", "label-null", "duplicate"]
)
def test_bad_data_is_refused_naming_the_column(
    cli: Cli, directory_store: Path, tmp_path: Path, table: pa.Table, message: str
) -> None:
    code, _, err = cli(
        "data", "add", str(write(table, tmp_path / "bad.parquet")), "--name", "churn", "--label", "label"
    )
    assert code == EXIT_BAD_INPUT and message in " ".join(err.split()), err
    assert _directories(directory_store) == [], "a refused add writes nothing"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": None}, "column 'colour' of churn@1 is dropped"),
        ({"count": np.ones(400)}, "column 'count' changes type from int64 (churn@1) to double"),
    ],
    ids=["dropped", "retyped"],
)
def test_a_schema_change_needs_to_be_allowed(
    cli: Cli, directory_store: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    cli("data", "add", str(write(frame(), tmp_path / "a.parquet")), "--name", "churn", "--label", "label")
    before = _directories(directory_store)
    changed = str(write(frame(seed=5, **change), tmp_path / "b.parquet"))
    code, _, err = cli("data", "add", changed, "--name", "churn", "--label", "label")
    assert code == EXIT_BAD_INPUT and message in " ".join(err.split()), err
    assert _directories(directory_store) == before
    code, added, _ = cli("data", "add", changed, "--name", "churn", "--label", "label", "--allow-schema-change")
    assert code == EXIT_OK and added["version"] == 2


def test_bad_arguments_are_refused_and_change_nothing(cli: Cli, directory_store: Path, tmp_path: Path) -> None:
    good = str(write(frame(), tmp_path / "a.parquet"))
    (tmp_path / "notes.txt").write_text("x1,label\n1,0\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    for args, message in [
        ([good, "--name", "Churn!", "--label", "label"], "dataset name 'Churn!' is not valid"),
        ([good, "--from-sklearn", "iris", "--name", "churn"], "give a FILE or --from-sklearn NAME (one of them)"),
        (["--name", "churn"], "give a FILE or --from-sklearn NAME (one of them)"),
        (
            ["--from-sklearn", "mnist", "--name", "digits"],
            "--from-sklearn 'mnist' is not one of scikit-learn's bundled datasets",
        ),
        ([str(tmp_path / "missing.csv"), "--name", "churn"], "missing.csv: no such file"),
        ([str(tmp_path / "notes.txt"), "--name", "churn"], "a dataset is a .parquet or .csv file (not .txt)"),
        ([str(tmp_path / "broken.parquet"), "--name", "churn"], "broken.parquet cannot be read as PARQUET"),
    ]:
        code, _, err = cli("data", "add", *args)
        assert code == EXIT_BAD_INPUT and message in " ".join(err.split()), (args, err)
    code, _, err = cli("data", "list", "--env", "qa")
    assert code == EXIT_BAD_INPUT and "--env 'qa' is not an environment" in err
    code, _, err = cli("data", "list", "--store", "ftp://host/x")
    assert code == EXIT_BAD_INPUT and "unknown scheme 'ftp'" in err
    assert _directories(directory_store) == []


def test_a_corrupted_or_tampered_file_is_refused(cli: Cli, directory_store: Path, tmp_path: Path) -> None:
    added = cli(
        "data", "add", str(write(frame(rows=3000), tmp_path / "a.parquet")), "--name", "churn", "--label", "label"
    )[1]
    version = directory_store / "datasets" / "churn" / added["sha256"]
    part = version / "part-00000.parquet"
    body = bytearray(part.read_bytes())
    body[len(body) // 2] ^= 0xFF
    part.write_bytes(bytes(body))
    code, _, err = cli("data", "pull", "churn", "-o", str(tmp_path / "copy"))
    assert code == EXIT_CHECK_FAILED and "part-00000.parquet has SHA-256" in err and "refused" in err
    assert not (tmp_path / "copy").exists(), "nothing of a refused version is written"
    with pytest.raises(store_module.CorruptDataset):
        store = DatasetStore(str(directory_store))
        store.read(store.resolve("churn"))
    (version / "sample.parquet").unlink()
    code, _, err = cli("data", "diff", "churn@1", "churn@1")
    assert code == EXIT_CHECK_FAILED and "sample.parquet is missing" in err
    (version / "manifest.json").write_text('{"name": "churn"}')
    code, _, err = cli("data", "show", "churn")
    assert code == EXIT_CHECK_FAILED and "is not a valid manifest" in err


def test_large_data_is_split_into_parts(directory_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PART_ROWS", 150)
    store = DatasetStore(str(directory_store))
    table = frame(rows=400)
    manifest, created = store.add(table, "churn", label="label", source="test")
    assert created and [f.rows for f in manifest.files] == [150, 150, 100] and manifest.rows == 400
    assert store.read(manifest).equals(table)
    assert manifest.sample is not None and manifest.sample.rows == 400

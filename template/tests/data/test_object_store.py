"""`mlops data` against the real local object store (SeaweedFS on loopback, through Arrow's S3 file system),
and what a kill between the files and the manifest leaves: nothing visible, and a retry converges."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.datasets.store import DatasetStore
from core.errors import EXIT_CHECK_FAILED, EXIT_OK
from pipelines.local import objectstore
from tests.data.conftest import BUCKET, frame, write
from tests.faults.conftest import kill_cli_at, run_cli

pytestmark = pytest.mark.integration
Cli = Callable[..., tuple[int, Any, str]]


def _keys(port: int, prefix: str) -> list[str]:
    pages = objectstore.s3_client(port).get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", []))


def test_add_list_show_diff_pull_in_the_object_store(
    cli: Cli, s3_store: str, object_store: int, tmp_path: Path
) -> None:
    code, first, err = cli("data", "add", "--from-sklearn", "wine", "--name", "wine")
    assert code == EXIT_OK, err
    prefix = s3_store.removeprefix(f"s3://{BUCKET}/") + f"/datasets/wine/{first['sha256']}/"
    assert _keys(object_store, prefix) == ["manifest.json", "part-00000.parquet", "sample.parquet"]
    shifted = frame(rows=178, seed=3)
    code, _, err = cli(
        "data",
        "add",
        str(write(shifted, tmp_path / "other.parquet")),
        "--name",
        "wine",
        "--allow-schema-change",
        "--label",
        "label",
    )
    assert code == EXIT_OK, err
    code, listed, _ = cli("data", "list", "wine")
    assert [v["version"] for v in listed] == [1, 2]
    code, diff, _ = cli("data", "diff", "wine@1", "wine@2")
    assert code == EXIT_OK and "alcohol" in diff["dropped"] and "x1" in diff["added"]
    code, shown, _ = cli("data", "show", "wine@1")
    assert code == EXIT_OK and shown["rows"] == 178 and shown["label"] == "target"
    code, _, _ = cli("data", "pull", "wine@1", "-o", str(tmp_path / "wine"))
    assert code == EXIT_OK and sorted(p.name for p in (tmp_path / "wine").iterdir()) == [
        "manifest.json",
        "part-00000.parquet",
        "sample.parquet",
    ]
    objectstore.s3_client(object_store).put_object(Bucket=BUCKET, Key=prefix + "part-00000.parquet", Body=b"tampered")
    code, _, err = cli("data", "pull", "wine@1", "-o", str(tmp_path / "again"))
    assert code == EXIT_CHECK_FAILED and "refused (corrupted or tampered with)" in " ".join(err.split())


@pytest.mark.parametrize("point", ["uploading part-00001.parquet", "uploading sample.parquet"])
def test_a_kill_before_the_manifest_leaves_no_version_and_a_retry_converges(
    s3_store: str, object_store: int, tmp_path: Path, point: str
) -> None:
    data = write(frame(rows=600_000, seed=4), tmp_path / "big.parquet")  # three parts of 250,000 rows at most
    args = ["data", "add", str(data), "--name", "events", "--label", "label"]
    printed = kill_cli_at(tmp_path, args, point, signal.SIGKILL)
    assert "wrote part-00002.parquet" in printed
    store = DatasetStore(s3_store)
    assert store.versions("events") == [], "no manifest, no version"
    assert store.incomplete("events") == 1
    prefix = s3_store.removeprefix(f"s3://{BUCKET}/") + "/datasets/events/"
    left = _keys(object_store, prefix)
    assert (
        left
        and not any(k.endswith("manifest.json") for k in left)
        and any(k.endswith("part-00000.parquet") for k in left)
    )
    listed = run_cli(tmp_path, "data", "list", "events")
    assert listed.returncode == EXIT_OK and "1 incomplete add(s) of events left no version" in " ".join(
        listed.stdout.split()
    )

    again = run_cli(tmp_path, *args, "-f", "json")
    assert again.returncode == EXIT_OK, again.stderr
    (manifest,) = store.versions("events")
    assert manifest.version == 1 and manifest.rows == 600_000 and store.incomplete("events") == 0
    assert left[0].split("/")[0] == manifest.sha256, "the retry finished the same content-addressed directory"
    assert store.read(manifest).num_rows == 600_000

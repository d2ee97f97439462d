"""`DatasetStore`: dataset versions in an object store (S3, GCS, the local S3-compatible store) or a directory.

Layout under the store's root: `datasets/<name>/<sha256>/part-00000.parquet …` (at most PART_ROWS rows
each, zstd) and `manifest.json`, written last. The store is reached through Arrow's file systems: S3 by
the AWS credential chain (the web identity of a pod, a workflow's OIDC role; the local store's endpoint
from `MLFLOW_S3_ENDPOINT_URL`), GCS by Application Default Credentials. No key is ever passed here.
"""

from __future__ import annotations

import functools
import getpass
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from core.datasets.manifest import Manifest, PartFile, check_name, columns_of, statistics, validate
from core.errors import BadInput, CheckFailed, EnvironmentProblem

PART_ROWS = 250_000
SAMPLE_ROWS = 1_000  # as many rows as serving's drift reference keeps (apps/serving/drift.py)
SAMPLE = "sample.parquet"
MANIFEST = "manifest.json"
CHUNK = 8 << 20


class CorruptDataset(CheckFailed):
    """A file's content is not what the manifest says: refused, never read into training."""


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The file system and root path of a store URI: `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, a path."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        local = Path(parts.path if parts.scheme else uri).expanduser().resolve()
        return pafs.LocalFileSystem(), str(local)
    if not parts.netloc:
        raise BadInput(f"store {uri!r} names no bucket", hint="s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX] or a path")
    root = f"{parts.netloc}{parts.path.rstrip('/')}"
    if parts.scheme == "s3":
        options: dict[str, str] = {}
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            options["region"] = region
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
        if endpoint:
            split = urlsplit(endpoint)
            options |= {"endpoint_override": split.netloc, "scheme": split.scheme or "https"}
        return pafs.S3FileSystem(**options), root
    if parts.scheme == "gs":
        return pafs.GcsFileSystem(), root
    raise BadInput(f"store {uri!r}: unknown scheme {parts.scheme!r}", hint="use s3://, gs:// or a local path")


def digest_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def version_digest(files: list[PartFile]) -> str:
    """A version's address: the digest of its files' digests and sizes, in order."""
    return hashlib.sha256("\n".join(f"{f.path} {f.sha256} {f.bytes}" for f in files).encode()).hexdigest()


class DatasetStore:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.fs, root = filesystem(uri)
        self.root = f"{root}/datasets"

    # ---------------------------------------------------------------- reading the catalogue
    def _call(self, what: str, function: Callable[[], object]) -> object:
        try:
            return function()
        except OSError as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise EnvironmentProblem(f"the dataset store {self.uri} could not {what}: {error}") from None

    def names(self) -> list[str]:
        infos = self._call(
            "be listed", lambda: self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        )
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)  # type: ignore[attr-defined]

    def versions(self, name: str) -> list[Manifest]:
        """The complete versions of `name` (those with a manifest), oldest first."""
        check_name(name)
        selector = pafs.FileSelector(f"{self.root}/{name}", allow_not_found=True)
        infos = self._call(f"list {name}", lambda: self.fs.get_file_info(selector))
        found = []
        for info in infos:  # type: ignore[attr-defined]
            if info.type == pafs.FileType.Directory and (manifest := self._manifest_at(f"{info.path}/{MANIFEST}")):
                found.append(manifest)
        return sorted(found, key=lambda m: (m.version, m.created_at))

    def incomplete(self, name: str) -> int:
        """Directories a crashed `add` left without a manifest (invisible; the next add of that data finishes one)."""
        selector = pafs.FileSelector(f"{self.root}/{name}", allow_not_found=True)
        infos = self._call(f"list {name}", lambda: self.fs.get_file_info(selector))
        directories = [i.path for i in infos if i.type == pafs.FileType.Directory]  # type: ignore[attr-defined]
        return sum(1 for d in directories if self._manifest_at(f"{d}/{MANIFEST}") is None)

    def _manifest_at(self, path: str) -> Manifest | None:
        try:
            with self.fs.open_input_stream(path) as stream:
                text = stream.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise EnvironmentProblem(f"the dataset store {self.uri} could not read {path}: {error}") from None
        try:
            return Manifest.model_validate_json(text)
        except ValueError as error:
            raise CorruptDataset(f"{path} is not a valid manifest: {error}") from None

    def resolve(self, reference: str) -> Manifest:
        """`NAME`, `NAME@latest`, `NAME@<version number>` or `NAME@<sha256 prefix, 6+ hex digits>`."""
        name, _, wanted = reference.partition("@")
        wanted = wanted or "latest"
        versions = self.versions(name)
        if not versions:
            raise BadInput(f"dataset {name!r} has no version in {self.uri}", hint="`mlops data add` makes one")
        if wanted == "latest":
            return versions[-1]
        if wanted.isdigit() and len(wanted) < 6:
            matches = [m for m in versions if m.version == int(wanted)]
        elif len(wanted) >= 6 and all(c in "0123456789abcdef" for c in wanted):
            matches = [m for m in versions if m.sha256.startswith(wanted)]
        else:
            raise BadInput(f"{reference!r}: the version is `latest`, a number or a SHA-256 prefix of 6+ hex digits")
        if len(matches) != 1:
            known = ", ".join(f"{m.version} ({m.short})" for m in versions)
            what = "matches no" if not matches else "matches more than one"
            raise BadInput(f"{reference!r} {what} version of {name}", hint=f"its versions: {known}")
        return matches[0]

    # ---------------------------------------------------------------- writing a version
    def add(
        self,
        table: pa.Table,
        name: str,
        *,
        label: str,
        source: str,
        allow_schema_change: bool = False,
        metadata: dict[str, str] | None = None,
        progress: Callable[[str], None] = lambda _: None,
    ) -> tuple[Manifest, bool]:
        """Write `table` as the next version of `name`; (its manifest, whether it is new). The same data again
        is the version it already is; a directory a crashed add left is overwritten and finished."""
        check_name(name)
        versions = self.versions(name)
        parent = versions[-1] if versions else None
        validate(table, label, parent, allow_schema_change)
        with tempfile.TemporaryDirectory(prefix="mlops-dataset-") as tmp:
            files = self._write_parts(table, Path(tmp), progress)
            sha = version_digest(files)
            directory = f"{self.root}/{name}/{sha}"
            existing = self._manifest_at(f"{directory}/{MANIFEST}")
            if existing is not None:
                if existing.label != label:
                    raise BadInput(
                        f"this data is already {existing.ref}, with label {existing.label!r} (not {label!r})"
                    )
                return existing, False
            sample = self._write_sample(table, Path(tmp))
            for index, part in enumerate([*files, sample], 1):
                progress(f"uploading {part.path} ({index}/{len(files) + 1}, {part.bytes / 1e6:.1f} MB)")
                upload = functools.partial(self._upload, Path(tmp) / part.path, f"{directory}/{part.path}")
                self._call(f"write {part.path}", upload)
        manifest = Manifest(
            name=name,
            version=(parent.version + 1) if parent else 1,
            sha256=sha,
            rows=table.num_rows,
            label=label,
            columns=columns_of(table.schema),
            stats=statistics(table),
            files=files,
            sample=sample,
            source=source,
            created_by=os.environ.get("GITHUB_ACTOR") or _user(),
            created_at=datetime.now(UTC),
            parent=parent.sha256 if parent else None,
            parent_version=parent.version if parent else None,
            metadata=metadata or {},
        )
        self._call("write the manifest", lambda: self._put_last(f"{directory}/{MANIFEST}", manifest))
        return manifest, True

    def _write_parts(self, table: pa.Table, directory: Path, progress: Callable[[str], None]) -> list[PartFile]:
        files = []
        for number, start in enumerate(range(0, table.num_rows, PART_ROWS)):
            chunk = table.slice(start, PART_ROWS)
            path = directory / f"part-{number:05d}.parquet"
            pq.write_table(chunk, path, compression="zstd")
            files.append(PartFile(path=path.name, sha256=digest_file(path), bytes=path.stat().st_size, rows=len(chunk)))
            progress(f"wrote {path.name} ({start + len(chunk):,}/{table.num_rows:,} rows)")
        return files

    def _write_sample(self, table: pa.Table, directory: Path) -> PartFile:
        """SAMPLE_ROWS rows drawn at random (the same rows for the same data: a fixed seed), in their order."""
        count = min(table.num_rows, SAMPLE_ROWS)
        rows = np.sort(np.random.default_rng(0).choice(table.num_rows, size=count, replace=False))
        path = directory / SAMPLE
        pq.write_table(table.take(pa.array(rows)), path, compression="zstd")
        return PartFile(path=SAMPLE, sha256=digest_file(path), bytes=path.stat().st_size, rows=count)

    def _upload(self, source: Path, target: str) -> None:
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with source.open("rb") as file, self.fs.open_output_stream(target) as out:
            shutil.copyfileobj(file, out, CHUNK)

    def _put_last(self, target: str, manifest: Manifest) -> None:
        """The manifest appears whole or not at all: one PUT on object stores, a rename on a disk."""
        body = json.dumps(manifest.model_dump(mode="json"), indent=2).encode()
        if isinstance(self.fs, pafs.LocalFileSystem):
            temporary = f"{target}.partial"
            with self.fs.open_output_stream(temporary) as out:
                out.write(body)
            os.replace(temporary, target)
            return
        with self.fs.open_output_stream(target) as out:
            out.write(body)

    # ---------------------------------------------------------------- reading a version
    def checked_bytes(self, manifest: Manifest, part: PartFile) -> bytes:
        path = f"{self.root}/{manifest.name}/{manifest.sha256}/{part.path}"
        try:
            with self.fs.open_input_stream(path) as stream:
                data = stream.read()
        except FileNotFoundError:
            raise CorruptDataset(f"{manifest.ref}: {part.path} is missing from {self.uri}") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != part.sha256 or len(data) != part.bytes:
            raise CorruptDataset(
                f"{manifest.ref}: {part.path} has SHA-256 {actual[:12]}…, its manifest says {part.sha256[:12]}…: "
                "refused (corrupted or tampered with)",
                hint="add the data again from its source, or pull a copy you trust",
            )
        return data

    def read(self, manifest: Manifest) -> pa.Table:
        """The version's rows, every file checked against its digest first."""
        tables = [pq.read_table(pa.BufferReader(self.checked_bytes(manifest, part))) for part in manifest.files]
        table = pa.concat_tables(tables)
        if table.num_rows != manifest.rows or columns_of(table.schema) != manifest.columns:
            raise CorruptDataset(f"{manifest.ref}: its files do not hold the rows and columns its manifest names")
        return table

    def sample(self, manifest: Manifest) -> pa.Table:
        """The version's random sample of rows (checked), or all its rows if it has none."""
        if manifest.sample is None:
            return self.read(manifest)
        return pq.read_table(pa.BufferReader(self.checked_bytes(manifest, manifest.sample)))

    def pull(self, manifest: Manifest, target: Path) -> Path:
        """The version's checked files and manifest into `target`, replacing it whole (never half-written)."""
        target = target.resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for part in [*manifest.files, *([manifest.sample] if manifest.sample else [])]:
                (staging / part.path).write_bytes(self.checked_bytes(manifest, part))
            (staging / MANIFEST).write_text(json.dumps(manifest.model_dump(mode="json"), indent=2))
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                target.rename(old)
                staging.rename(target)
                shutil.rmtree(old)
            else:
                staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

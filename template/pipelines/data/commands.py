"""`mlops data`: datasets as immutable, content-addressed versions in an environment's store.

    mlops data add train.parquet --name churn --label churned      # the local dev bucket (`mlops local up`)
    mlops data add --from-sklearn breast_cancer --name diagnosis   # one of scikit-learn's bundled datasets
    mlops data add data.csv --name churn --store s3://BUCKET        # a cloud environment's bucket
    mlops data list [NAME]
    mlops data show diagnosis@latest                                # schema, statistics, models trained on it
    mlops data diff diagnosis@1 diagnosis@2                         # schema changes, rows, per-column shift
    mlops data pull diagnosis@2 -o data/diagnosis                   # the checked files and manifest

A version is `NAME@latest`, `NAME@<number>` or `NAME@<SHA-256 prefix>`. The store is `--store` (or
MLOPS_DATA_STORE), else the local environment's bucket of `--env` (default dev).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.datasets.manifest import Manifest
from core.datasets.store import DatasetStore
from core.errors import BadInput
from pipelines.common.options import FormatOption
from pipelines.common.output import OutputFormat, Report, emit, progress
from pipelines.data import lineage
from pipelines.data.sources import SKLEARN_LABEL, open_store, read_file, read_sklearn
from pipelines.local.commands import environment

app = typer.Typer(
    help="Versioned datasets in an environment's store: add, list, show, diff, pull.", no_args_is_help=True
)

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Whose local bucket (without --store).")]
StoreOption = Annotated[
    str | None, typer.Option(help="s3://BUCKET, gs://BUCKET or a path (default MLOPS_DATA_STORE, else --env's).")
]


def _store(env: str, store: str | None) -> DatasetStore:
    return open_store(environment(), env, store)


@app.command("add")
def add(
    file: Annotated[Path | None, typer.Argument(help="A .parquet or .csv file.")] = None,
    *,
    name: Annotated[str, typer.Option("--name", "-n", help="The dataset's name.")],
    label: Annotated[str, typer.Option(help="The label column.")] = SKLEARN_LABEL,
    from_sklearn: Annotated[str | None, typer.Option(help="One of scikit-learn's bundled datasets.")] = None,
    allow_schema_change: Annotated[
        bool, typer.Option(help="Accept columns dropped or retyped since the latest version.")
    ] = False,
    env: EnvOption = "dev",
    store: StoreOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Add a version: validated, written part by part, its manifest last (a crash leaves no version)."""
    if (file is None) == (from_sklearn is None):
        raise BadInput("give a FILE or --from-sklearn NAME (one of them)")
    table = read_file(file) if file is not None else read_sklearn(str(from_sklearn))
    source = str(file.resolve()) if file is not None else f"sklearn:{from_sklearn}"
    target = _store(env, store)
    manifest, created = target.add(
        table, name, label=label, source=source, allow_schema_change=allow_schema_change, progress=progress
    )
    verb = "Added" if created else "Already there:"
    emit(
        Report(
            f"{verb} {manifest.ref} ({manifest.short}) in {target.uri}",
            ["rows", "columns", "files", "bytes", "parent"],
            [
                [
                    manifest.rows,
                    len(manifest.columns),
                    len(manifest.files),
                    sum(f.bytes for f in manifest.files),
                    f"{name}@{manifest.parent_version}" if manifest.parent_version else None,
                ]
            ],
            data={"created": created, "store": target.uri, **manifest.model_dump(mode="json")},
        ),
        fmt,
    )


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="One dataset's versions (default: every dataset).")] = None,
    env: EnvOption = "dev",
    store: StoreOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """The datasets, or one dataset's versions (only complete ones: each has its manifest)."""
    source = _store(env, store)
    names = [name] if name else source.names()
    rows, data = [], []
    for each in names:
        versions = source.versions(each)
        shown = versions if name else versions[-1:]
        for manifest in shown:
            rows.append(
                [
                    manifest.ref,
                    manifest.short,
                    manifest.rows,
                    len(manifest.columns),
                    manifest.created_by,
                    manifest.created_at.strftime("%Y-%m-%d %H:%M"),
                ]
            )
            data.append({"name": each, "version": manifest.version, "sha256": manifest.sha256, "rows": manifest.rows})
    footer = None
    if name and (left := source.incomplete(name)):
        footer = f"{left} incomplete add(s) of {name} left no version (adding the same data again finishes it)"
    title = f"Versions of {name}" if name else "Datasets (latest version of each)"
    emit(
        Report(
            f"{title} in {source.uri}" + ("" if rows else ": none"),
            ["version", "sha256", "rows", "columns", "created by", "created at"],
            rows,
            data=data,
            footer=footer,
        ),
        fmt,
    )


@app.command("show")
def show(
    reference: Annotated[str, typer.Argument(help="NAME[@VERSION].")],
    env: EnvOption = "dev",
    store: StoreOption = None,
    tracking_uri: Annotated[str | None, typer.Option(help="Where to look for models trained on it.")] = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Schema and per-column statistics of a version, its lineage, and the model versions trained on it."""
    manifest = _store(env, store).resolve(reference)
    trained = lineage.models_trained_on(manifest, tracking_uri, environment())
    rows = [[c.name, c.dtype, *_stats_cells(manifest, c.name)] for c in manifest.columns]
    footer = "\n".join(
        [
            f"{manifest.rows:,} rows in {len(manifest.files)} file(s), label {manifest.label!r}",
            f"source: {manifest.source}",
            f"parent: {manifest.name}@{manifest.parent_version}" if manifest.parent_version else "parent: none",
            *(f"{k}: {v}" for k, v in sorted(manifest.metadata.items())),
            "models trained on it: " + (", ".join(trained.names) if trained.names else trained.note),
        ]
    )
    emit(
        Report(
            f"{manifest.ref} ({manifest.sha256})",
            ["column", "dtype", "nulls", "mean", "std", "min", "max", "distinct"],
            rows,
            data={**manifest.model_dump(mode="json"), "models": trained.names},
            footer=footer,
        ),
        fmt,
    )


def _stats_cells(manifest: Manifest, column: str) -> list[object]:
    stats = manifest.stats[column]
    rounded = [None if v is None else round(v, 4) for v in (stats.mean, stats.std, stats.min, stats.max)]
    return [stats.nulls, *rounded, stats.distinct]


@app.command("diff")
def diff(
    first: Annotated[str, typer.Argument(help="NAME@VERSION (the reference).")],
    second: Annotated[str, typer.Argument(help="NAME@VERSION, or @VERSION of the same dataset.")],
    env: EnvOption = "dev",
    store: StoreOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Schema changes, row counts and each shared numeric column's shift (KS test and PSI, as serving's drift)."""
    source = _store(env, store)
    a = source.resolve(first)
    b = source.resolve(a.name + second if second.startswith("@") else second)
    result = lineage.compare_versions(source, a, b)
    emit(
        Report(
            f"{a.ref} → {b.ref}: {a.rows:,} → {b.rows:,} rows; "
            f"{len(result.drifted)} of {len(result.shifts)} numeric column(s) shifted",
            ["column", "change", "mean before", "mean after", "shift (std)", "KS p-value", "PSI", "shifted"],
            result.rows(),
            data=result.as_dict(),
            footer=result.footer(),
        ),
        fmt,
    )


@app.command("pull")
def pull(
    reference: Annotated[str, typer.Argument(help="NAME[@VERSION].")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write (replaced whole).")],
    env: EnvOption = "dev",
    store: StoreOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """The version's files, each checked against its SHA-256, and its manifest, into a directory."""
    source = _store(env, store)
    manifest = source.resolve(reference)
    target = source.pull(manifest, output)
    emit(
        Report(
            f"Pulled {manifest.ref} ({manifest.short}) into {target}",
            ["file", "rows", "bytes", "sha256"],
            [[f.path, f.rows, f.bytes, f.sha256[:12]] for f in manifest.files],
            data={"directory": str(target), **manifest.model_dump(mode="json")},
        ),
        fmt,
    )

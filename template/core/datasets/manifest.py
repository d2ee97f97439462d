"""What a dataset version says of itself (`manifest.json`), and the checks a new version must pass."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from core.errors import BadInput

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
SHA256 = r"^[0-9a-f]{64}$"


class Column(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    dtype: str  # the Arrow type, as Arrow prints it (`double`, `int64`, `string`, ...)


class ColumnStats(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int
    nulls: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    distinct: int | None = None  # non-numeric columns


class PartFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # relative to the version's directory
    sha256: str = Field(pattern=SHA256)
    bytes: int = Field(ge=0)
    rows: int = Field(ge=0)


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    name: str = Field(pattern=NAME.pattern)
    version: int = Field(ge=1)
    sha256: str = Field(pattern=SHA256)  # of the part files' digests, in order: the version's address
    rows: int = Field(ge=1)
    label: str
    columns: list[Column]
    stats: dict[str, ColumnStats]
    files: list[PartFile]
    sample: PartFile | None = None  # up to SAMPLE_ROWS random rows (what `diff` compares), not part of the address
    source: str
    created_by: str
    created_at: datetime
    parent: str | None = Field(default=None, pattern=SHA256)
    parent_version: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def short(self) -> str:
        return self.sha256[:12]

    def dtypes(self) -> dict[str, str]:
        return {c.name: c.dtype for c in self.columns}


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise BadInput(
            f"dataset name {name!r} is not valid",
            hint="2 to 63 characters: lowercase letters, digits and '-', starting with a letter or digit",
        )
    return name


def is_numeric(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype))


def columns_of(schema: pa.Schema) -> list[Column]:
    return [Column(name=f.name, dtype=str(f.type)) for f in schema]


def statistics(table: pa.Table) -> dict[str, ColumnStats]:
    """Per column: count and nulls; mean, standard deviation, min and max of numeric ones; distinct values
    of the others (what `show` prints and `diff` compares)."""
    stats: dict[str, ColumnStats] = {}
    for field in table.schema:
        column = table.column(field.name)
        base: dict[str, Any] = {"count": len(column) - column.null_count, "nulls": column.null_count}
        if is_numeric(field.type) and base["count"]:
            values = pc.cast(column, pa.float64())
            minmax = pc.min_max(values).as_py()
            std = pc.stddev(values, ddof=1).as_py() if base["count"] > 1 else 0.0
            base |= {"mean": pc.mean(values).as_py(), "std": std, "min": minmax["min"], "max": minmax["max"]}
        elif not is_numeric(field.type):
            base["distinct"] = pc.count_distinct(column).as_py()
        stats[field.name] = ColumnStats(**{k: _finite_or_none(v) for k, v in base.items()})
    return stats


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def validate(table: pa.Table, label: str, parent: Manifest | None, allow_schema_change: bool) -> None:
    """Refuse what must not become a version, naming the column: no rows, a missing label column,
    missing or non-finite values in a numeric column, a column dropped or retyped since the parent."""
    if table.num_rows == 0 or table.num_columns == 0:
        raise BadInput("the data is empty: no rows" if table.num_columns else "the data has no columns")
    names = table.schema.names
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise BadInput(f"column {twice[0]!r} appears more than once")
    if label not in names:
        raise BadInput(f"the label column {label!r} is not in the data", hint=f"its columns: {', '.join(names)}")
    for field in table.schema:
        if not is_numeric(field.type):
            continue
        column = table.column(field.name)
        bad = column.null_count
        if pa.types.is_floating(field.type):
            bad += len(column) - column.null_count - pc.sum(pc.is_finite(column)).as_py()
        if bad:
            raise BadInput(
                f"column {field.name!r} is numeric but has {bad} missing or non-finite value(s) (NaN, inf, empty)",
                hint="clean or impute them before adding the data",
            )
    if table.column(label).null_count:
        raise BadInput(f"the label column {label!r} has {table.column(label).null_count} missing value(s)")
    if parent is not None and not allow_schema_change:
        before, after = parent.dtypes(), {f.name: str(f.type) for f in table.schema}
        for column, dtype in before.items():
            if column not in after:
                raise BadInput(
                    f"column {column!r} of {parent.ref} is dropped",
                    hint="pass --allow-schema-change if the new schema is meant",
                )
            if after[column] != dtype:
                raise BadInput(
                    f"column {column!r} changes type from {dtype} ({parent.ref}) to {after[column]}",
                    hint="pass --allow-schema-change if the new schema is meant",
                )

"""One way to print results: `--format table|json|markdown` for every command that reports data.

A command builds a `Report` (a title, columns, rows, and the machine-readable `data`); `emit` prints
it. JSON goes to stdout alone, so `mlops … --format json | jq` always works.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


@dataclass
class Report:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]] = field(default_factory=list)
    data: Any = None
    footer: str | None = None


def emit(report: Report, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        payload = (
            report.data
            if report.data is not None
            else [dict(zip(report.columns, row, strict=True)) for row in report.rows]
        )
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    elif fmt is OutputFormat.MARKDOWN:
        sys.stdout.write(markdown_table(report) + "\n")
    else:
        table = Table(title=report.title, title_justify="left")
        for column in report.columns:
            table.add_column(column)
        for row in report.rows:
            # Cells are data, not markup: `[secret]` must print as itself.
            table.add_row(*(escape(_cell(v)) for v in row))
        console.print(table)
        if report.footer:
            console.print(report.footer)


def markdown_table(report: Report) -> str:
    lines = [f"### {report.title}", "", "| " + " | ".join(report.columns) + " |"]
    lines.append("|" + "|".join(" --- " for _ in report.columns) + "|")
    for row in report.rows:
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|").replace("\n", "<br>") for v in row) + " |")
    if report.footer:
        lines += ["", report.footer]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays clean for data."""
    err_console.print(f"[dim]•[/dim] {message}")

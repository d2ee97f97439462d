"""Options shared by the commands (`--env`, `--all`, `--format`) and where the repository is."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import BadInput
from infra.config import find_root, list_stacks
from pipelines.common.output import OutputFormat

FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


EnvOption = Annotated[list[str] | None, typer.Option("--env", "-e", help="Stack to read (repeatable).")]


AllOption = Annotated[bool, typer.Option("--all", help="Every stack that has a file in stacks/.")]


def repo_root() -> Path:
    try:
        return find_root()
    except FileNotFoundError as exc:
        raise BadInput(str(exc)) from None


def select_stacks(root: Path, envs: list[str] | None, all_stacks: bool) -> list[str]:
    """The stacks named on the command line, checked against the files in stacks/."""
    known = list_stacks(root)
    if all_stacks and envs:
        raise BadInput("give either --env or --all, not both")
    if all_stacks:
        return known
    if not envs:
        raise BadInput("no stack selected", hint=f"pass --env with one of: {', '.join(known)}, or --all")
    unknown = [e for e in envs if e not in known]
    if unknown:
        raise BadInput(f"unknown stack {', '.join(map(repr, unknown))}: stacks with a file are {', '.join(known)}")
    return list(dict.fromkeys(envs))

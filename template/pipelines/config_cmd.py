"""`mlops config`: validate and show the stack files (the desired state of every environment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.config import SettingsError, find_root, list_stacks, load_stack
from infra.settings import Settings
from pipelines.errors import BadInput, CheckFailed
from pipelines.output import OutputFormat, Report, emit, err_console

app = typer.Typer(help="Validate and show stack settings (stacks/Pulumi.<env>.yaml).", no_args_is_help=True)

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


def summary_row(stack: str, settings: Settings) -> list[object]:
    pin = settings.serving.model
    return [
        stack,
        settings.environment.value,
        [c.value for c in settings.clouds] or ["existing cluster"],
        f"{pin.name} v{pin.version}" if pin.version else f"{pin.name} (none)",
        f"{settings.budget.monthly_usd:,.0f}" if settings.budget else None,
    ]


@app.command("validate")
def validate(envs: EnvOption = None, all_stacks: AllOption = False, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Validate stack files; exit 1 listing every problem (file, key path, expected) if any is invalid."""
    root = repo_root()
    rows: list[list[object]] = []
    failures: list[SettingsError] = []
    for stack in select_stacks(root, envs, all_stacks):
        try:
            rows.append([*summary_row(stack, load_stack(root, stack)), "valid"])
        except SettingsError as exc:
            failures.append(exc)
            rows.append([stack, None, None, None, None, f"invalid ({len(exc.problems)} problems)"])
    emit(
        Report(
            title="Stack settings",
            columns=["stack", "environment", "clouds", "model pin", "budget USD/month", "status"],
            rows=rows,
            footer=f"{len(rows) - len(failures)} of {len(rows)} stack files valid",
        ),
        fmt,
    )
    for failure in failures:
        err_console.print(f"[bold red]error:[/bold red] {failure}")
    if failures:
        raise CheckFailed(
            f"{len(failures)} stack file(s) invalid", hint="fix the keys listed above; the schema is infra/settings.py"
        )


@app.command("show")
def show(
    env: Annotated[str, typer.Option("--env", "-e", help="Stack to show.")],
    fmt: FormatOption = OutputFormat.JSON,
) -> None:
    """Print a stack's settings with every default filled in."""
    root = repo_root()
    (stack,) = select_stacks(root, [env], False)
    settings = load_stack(root, stack)
    data = settings.model_dump(mode="json")
    rows = [[key, value] for key, value in _flatten(data)]
    emit(Report(title=f"Settings of stack {stack}", columns=["key", "value"], rows=rows, data=data), fmt)


def _flatten(data: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(data, dict):
        items: list[tuple[str, object]] = []
        for key, value in data.items():
            items += _flatten(value, f"{prefix}.{key}" if prefix else key)
        return items
    return [(prefix, data)]

"""`mlops config`: validate and show the stack files (the desired state of every environment)."""

from __future__ import annotations

from typing import Annotated

import typer

from core.errors import CheckFailed
from infra.config import SettingsError, load_stack
from infra.settings import Settings
from pipelines.common.options import AllOption, EnvOption, FormatOption, repo_root, select_stacks
from pipelines.common.output import OutputFormat, Report, emit, err_console

app = typer.Typer(help="Validate and show stack settings (stacks/Pulumi.<env>.yaml).", no_args_is_help=True)


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
            f"{len(failures)} stack file(s) invalid", hint="fix the keys listed above; the schema is infra/settings/"
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

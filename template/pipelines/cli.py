"""`mlops`: every step the workflows run, runnable on a laptop.

This module only assembles the command tree from the flows' own command modules
(`pipelines/<flow>/commands.py`) and maps errors to exit codes (see `core.errors`). Each command
is a thin layer over a function of its flow that the tests call directly.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

import typer

from core.errors import EXIT_BAD_INPUT, EXIT_OK, MlopsError, Terminated
from infra.config import SettingsError
from pipelines.common.output import err_console
from pipelines.config import commands as config_commands
from pipelines.data import commands as data_commands
from pipelines.images import commands as images_commands
from pipelines.local import commands as local_commands
from pipelines.monitoring import commands as monitoring_commands
from pipelines.plan import commands as plan_commands
from pipelines.plan import cost_commands, policy_commands
from pipelines.release import commands as release_commands
from pipelines.training import commands as training_commands

app = typer.Typer(
    name="mlops",
    help="Run the ML platform's lifecycle: local environment, training, plans, policy, promotion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(config_commands.app, name="config")
app.add_typer(local_commands.app, name="local")
app.add_typer(data_commands.app, name="data")
app.command("train")(training_commands.train_command)
app.command("plan")(plan_commands.plan)
app.add_typer(policy_commands.app, name="policy")
app.command("cost")(cost_commands.cost)
app.command("promote")(release_commands.promote)
app.command("gate")(release_commands.gate)
app.command("sync")(release_commands.sync)
app.command("rollback")(release_commands.rollback)
app.command("report")(release_commands.report)
app.command("rollout-status")(release_commands.rollout_status)
app.command("affected")(release_commands.affected)
app.command("drift")(monitoring_commands.drift)
app.add_typer(images_commands.app, name="images")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code instead of raising SystemExit."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupted)
        signal.signal(signal.SIGINT, _interrupted)
    try:
        code = _main(argv)
    except KeyboardInterrupt:
        code = 130
    if RECEIVED:  # Ctrl-C or SIGTERM: every undo ran on the way out (typer returns 130 for both)
        what = "terminated" if RECEIVED[0] == signal.SIGTERM else "interrupted"
        err_console.print(f"[red]{what}[/red]: what this command had started is undone; running it again starts afresh")
        code = 143 if RECEIVED[0] == signal.SIGTERM else 130
    if argv is None and "pipelines.plan.offline" in sys.modules:
        # The cloud SDKs leave about a million objects behind; freeing them one by one at interpreter
        # exit costs a second. The command has finished (its pool is shut down): flush and leave.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


# The interrupts this command received, in order.
RECEIVED: list[int] = []


def _interrupted(signum: int, _frame: object) -> None:
    """SIGINT and SIGTERM unwind the command (every `finally` and undo runs) instead of ending it."""
    RECEIVED.append(signum)
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _main(argv: Sequence[str] | None) -> int:
    # Libraries' INFO chatter (MLflow's run links, registration notices) drowns the progress lines.
    for noisy in ("mlflow", "alembic", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="mlops", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        if not RECEIVED:
            err_console.print("[red]aborted[/red]")
        return 130
    except typer.TyperException as exc:  # typer's own (vendored click) usage errors
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"[bold red]error:[/bold red] {exc}")
        return int(getattr(exc, "exit_code", EXIT_BAD_INPUT) or EXIT_BAD_INPUT)
    except SettingsError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}")
        return EXIT_BAD_INPUT
    except MlopsError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc.message}")
        if exc.hint:
            err_console.print(f"[yellow]hint:[/yellow] {exc.hint}")
        return exc.exit_code
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())

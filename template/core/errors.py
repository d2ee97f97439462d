"""Errors meant for people, and the exit codes the CLI maps them to.

Exit codes (stable; workflows rely on them):
  0  success
  1  a check ran and said no (policy violation, failed gate, failed smoke test)
  2  bad input (arguments, stack files, promotion requests): nothing was changed
  3  the environment is not usable (a server is down, a tool is missing, a port is taken)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3


class MlopsError(Exception):
    """An error with a message for people and, where one helps, what to do next."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        # Raised in a worker process, it must cross back whole (message and hint).
        return (type(self), (self.message, self.hint))


class BadInput(MlopsError):
    exit_code = EXIT_BAD_INPUT


class CheckFailed(MlopsError):
    exit_code = EXIT_CHECK_FAILED


class EnvironmentProblem(MlopsError):
    exit_code = EXIT_ENVIRONMENT


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is (the CLI installs the handler): it unwinds like Ctrl-C, so every
    `finally` and undo runs, and the command exits 143 instead of dying half-way."""

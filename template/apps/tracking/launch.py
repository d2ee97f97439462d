"""Starts a program with secrets read from files into its environment, for programs that take a secret only
from a variable (the MLflow server: libpq's PGPASSWORD, Flask's MLFLOW_FLASK_SERVER_SECRET_KEY). The pod
mounts its Secret as files, so no Kubernetes object passes a secret as an environment variable.

    python -m apps.tracking.launch --secret NAME=PATH [--secret NAME=PATH ...] -- PROGRAM [ARG ...]

The program replaces this process (its signals and exit code are its own). A missing, unreadable or
empty file stops here, naming the variable and the path, before the program starts.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def secret_environment(pairs: Sequence[str]) -> dict[str, str]:
    """`NAME=PATH` pairs -> {NAME: the file's text without its trailing newline}."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not NAME.match(name) or not path:
            raise SystemExit(f"--secret {pair!r}: expected NAME=PATH with NAME like PGPASSWORD")
        if name in found:
            raise SystemExit(f"--secret {name}: given twice")
        try:
            value = Path(path).read_text().rstrip("\r\n")
        except OSError as error:
            raise SystemExit(f"--secret {name}: cannot read {path} ({error.strerror})") from None
        if not value:
            raise SystemExit(f"--secret {name}: {path} is empty")
        found[name] = value
    return found


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m apps.tracking.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--secret", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("program", nargs=argparse.REMAINDER, help="-- PROGRAM [ARG ...]")
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("no program to start (put it after --)")
    env = {**(os.environ if environ is None else environ), **secret_environment(args.secret)}
    sys.stdout.flush()
    os.execvpe(program[0], program, env)  # noqa: S606 (the program is the pod's own command line)


if __name__ == "__main__":
    main()

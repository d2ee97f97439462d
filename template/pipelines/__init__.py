"""The `mlops` CLI that CI and people both run: one package per flow, each with its logic and its
typer commands; `cli.py` only assembles the command tree.

Imports: `core`, `infra`, `apps`, `policies`, and, within `pipelines`, only the flows below (see the
layers contract in pyproject.toml: cli, bench, monitoring | training | images, release, local,
promotion, plan, config, common).
"""

import sys

# Some machines set PYTHONDONTWRITEBYTECODE, which makes every run recompile MLflow & co. (~3x slower
# imports). Caching bytecode in the project's own .venv is what Python does by default elsewhere.
sys.dont_write_bytecode = False

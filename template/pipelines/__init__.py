"""Lifecycle commands of the platform and the `mlops` CLI that CI and people both run."""

import sys

# Some machines set PYTHONDONTWRITEBYTECODE, which makes every run recompile MLflow & co. (~3x slower
# imports). Caching bytecode in the project's own .venv is what Python does by default elsewhere.
sys.dont_write_bytecode = False

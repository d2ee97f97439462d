"""Each cloud choice renders into a git repository whose own install, linters and tests pass."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from common import CLOUD_CHOICES, git_init, render, run

pytestmark = pytest.mark.slow

# The generated project must not see the template's virtualenv.
CLEAN_ENV = {"VIRTUAL_ENV": "", "CI": os.environ.get("CI", "")}


# One xdist group per variant: its install is made once, on the worker that runs all of its tests.
@pytest.fixture(scope="module", params=[pytest.param(c, marks=pytest.mark.xdist_group(c)) for c in CLOUD_CHOICES])
def installed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cloud = request.param
    project = render(tmp_path_factory.mktemp(cloud) / "platform", {"clouds": cloud})
    git_init(project)
    run(["make", "install"], project, env=CLEAN_ENV)
    return project


def test_lock_matches_pyproject(installed: Path) -> None:
    assert shutil.which("uv"), "uv must be installed by the template's own dependencies"
    run(["uv", "lock", "--check", "--offline"], installed, env=CLEAN_ENV)
    run(["uv", "lock", "--check", "--offline", "--project", "tools/checkov"], installed, env=CLEAN_ENV)


def test_generated_lint_passes(installed: Path) -> None:
    result = run(["make", "lint"], installed, env=CLEAN_ENV)
    assert "4 of 4 stack files valid" in result.stdout
    assert "Contracts: 5 kept, 0 broken." in result.stdout, "the import layering is checked in every variant"


@pytest.mark.parametrize(
    ("module", "imports", "contract"),
    [
        ("apps/serving/probe.py", "import pipelines.cli", "apps and infra never import"),
        ("pipelines/common/probe.py", "import pipelines.release.gate", "a flow imports the flows below it"),
        ("pipelines/plan/probe.py", "import pipelines.release.pins", "a flow imports the flows below it"),
    ],
)
def test_import_contracts_catch_an_upward_import(installed: Path, module: str, imports: str, contract: str) -> None:
    """The layering check can fail: one upward import breaks its contract (and nothing is left behind)."""
    probe = installed / module
    probe.write_text(f'"""A probe of the import contracts."""\n\n{imports}  # noqa: F401\n')
    try:
        result = run(["uv", "run", "--frozen", "lint-imports"], installed, env=CLEAN_ENV, check=False)
    finally:
        probe.unlink()
    assert result.returncode != 0 and "BROKEN" in result.stdout, result.stdout
    report = result.stdout.split("Broken contracts", 1)[1]
    assert contract in report and module.removesuffix(".py").replace("/", ".") in report, report


def test_generated_test_suite_passes(installed: Path) -> None:
    """`both` runs the whole suite, real local servers included; the single-cloud variants differ from it only
    in cloud code, so they run everything but the integration tests (which are the same for every variant)."""
    cloud = installed.parent.name.rstrip("0123456789")
    if cloud == "both":
        # The whole suite, image builds with podman included (tests/containers): about 20 minutes on 2 cores.
        result = run(["make", "test"], installed, env=CLEAN_ENV, timeout=2400)
    else:
        result = run(["uv", "run", "--frozen", "pytest", "-m", "not integration"], installed, env=CLEAN_ENV)
        assert "deselected" in result.stdout, "the integration tests exist and were deselected on purpose"
    assert " passed" in result.stdout and " failed" not in result.stdout and " error" not in result.stdout


def test_console_script_runs(installed: Path) -> None:
    result = run([installed / ".venv" / "bin" / "mlops", "--help"], installed, env=CLEAN_ENV)
    assert "promote" in result.stdout and "config" in result.stdout


def test_generated_tree_is_clean_after_checks(installed: Path) -> None:
    """Installing, linting and testing leave nothing that git would commit (all ignored)."""
    status = run(["git", "status", "--porcelain"], installed).stdout
    assert status == "", status

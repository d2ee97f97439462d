from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import load_stack
from pipelines.local import LocalEnvironment, UpSummary

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smoke", "smoke tests against a deployed environment (tests/smoke)")
    group.addoption("--serving-url", help="serving endpoint to smoke-test (default: start the local environment)")
    group.addoption("--expected-version", type=int, help="model version the endpoint must serve")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --serving-url the smoke suite starts the local servers: it is an integration test.
    Against a deployed endpoint, the checks of this machine's processes do not apply."""
    if not config.getoption("--serving-url"):
        for item in items:
            if Path(str(item.fspath)).parent.name == "smoke":
                item.add_marker(pytest.mark.integration)
        return
    deselected = [item for item in items if item.get_closest_marker("local_host")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch copy of the repository's Pulumi.yaml and stacks/, used as MLOPS_ROOT."""
    (tmp_path / "stacks").mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    for path in (ROOT / "stacks").glob("Pulumi.*.yaml"):
        shutil.copy(path, tmp_path / "stacks" / path.name)
    monkeypatch.setenv("MLOPS_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalEnvironment, UpSummary]]:
    """The real local environment (moto, MLflow, BentoML on 127.0.0.1), state in a temporary directory."""
    model = load_stack(ROOT, "local").serving.model.name
    env = LocalEnvironment(ROOT, model, home=tmp_path_factory.mktemp("local-env"))
    try:
        summary = env.up()
        yield env, summary
    finally:
        env.down(purge=True)

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from infra.config import load_stack
from pipelines.common.procs import Proc
from pipelines.local import objectstore
from pipelines.local.environment import SERVICES, LocalEnvironment, UpSummary

if TYPE_CHECKING:
    from pipelines.plan.graph import Plan

ROOT = Path(__file__).resolve().parents[1]
# Images cannot be built here (no container engine): tests that need the apps deployed pin these
# made-up digests, as the images workflow would pin real ones.
BUILT_FROM = "0123456789abcdef0123456789abcdef01234567"
DIGESTS = {image: "sha256:" + hashlib.sha256(image.encode()).hexdigest() for image in ("serving", "tracking")}
LOCAL_REGISTRY = "registry.internal:5000/platform"


def pin_built_images(root: Path, stacks: list[str] | None = None) -> None:
    """Pin `DIGESTS` in the stack files under `root` (default: all) with the edit `mlops images pin`
    makes (the local stack: full references in a registry of its own)."""
    from infra.config import project_name
    from infra.settings import ImagePin
    from pipelines.images.pins import set_images

    project = project_name(root)
    paths = (
        [root / "stacks" / f"Pulumi.{s}.yaml" for s in stacks] if stacks else (root / "stacks").glob("Pulumi.*.yaml")
    )
    for path in paths:
        local = path.name == "Pulumi.local.yaml"
        pins = {
            image: ImagePin(reference=f"{LOCAL_REGISTRY}/{image}@{digest}")
            if local
            else ImagePin(digest=digest, commit=BUILT_FROM)
            for image, digest in DIGESTS.items()
        }
        path.write_text(set_images(path.read_text(), project, path.name, pins))


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


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def git_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, folders: tuple[str, ...], files: tuple[str, ...]
) -> Path:
    """`folders` and `files` of this project committed in `tmp_path/work` (MLOPS_ROOT), with a bare
    remote `origin` that has `main`."""
    for key, value in {"NAME": "Test", "EMAIL": "test@example.invalid"}.items():
        monkeypatch.setenv(f"GIT_AUTHOR_{key}", value)
        monkeypatch.setenv(f"GIT_COMMITTER_{key}", value)
    work = tmp_path / "work"
    for folder in folders:
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in files:
        shutil.copy(ROOT / name, work / name)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "base")
    git(tmp_path, "init", "-q", "--bare", "-b", "main", "origin.git")
    git(work, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(work, "push", "-q", "origin", "main")
    monkeypatch.setenv("MLOPS_ROOT", str(work))
    return work


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
def local_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalEnvironment, UpSummary]]:
    """The real local environment (SeaweedFS, MLflow, BentoML on 127.0.0.1), state in a temporary directory,
    and the summary of its first `up`."""
    model = load_stack(ROOT, "local").serving.model.name
    env = LocalEnvironment(ROOT, model, home=tmp_path_factory.mktemp("local-env"))
    saved = dict(os.environ)
    try:
        summary = env.up()
        yield env, summary
    finally:
        env.down(purge=True)
        os.environ.clear()
        os.environ.update(saved)


def ensure_running(env: LocalEnvironment) -> dict[str, Proc]:
    """Every server of `env` running (an earlier test may have stopped one: `up` converges), and this
    process's S3 client settings pointing at its object store (another environment may have moved them)."""
    running = env.running()
    if sorted(running) != sorted(SERVICES):
        env.up()
        running = env.running()
    os.environ.update(objectstore.client_env(running["object_store"].port))
    return running


@pytest.fixture
def local_env(local_session: tuple[LocalEnvironment, UpSummary]) -> tuple[LocalEnvironment, UpSummary]:
    """The session's local environment, running, as this test finds it (tests run in random order:
    the summary is the first `up`'s; what runs now is `env.running()`)."""
    ensure_running(local_session[0])
    return local_session


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """Undo what a test's own LocalEnvironment writes into this process's environment (its S3 endpoint)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# Plans of the repository's own stacks (tests/plan, tests/infra, tests/policies), images pinned.


@pytest.fixture(scope="session")
def pinned_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Pulumi.yaml and every stack file, images pinned."""
    from tests.planning import STACKS, write_stack

    root = tmp_path_factory.mktemp("pinned")
    for stack in STACKS:
        write_stack(root, stack)
    return root


@pytest.fixture(scope="session")
def plans(pinned_root: Path) -> dict[str, Plan]:
    from pipelines.plan.offline import plan_stacks
    from tests.planning import STACKS

    return {plan.stack: plan for plan in plan_stacks(pinned_root, STACKS)}


@pytest.fixture
def plan_with(tmp_path: Path) -> Callable[[str, Callable[[dict[str, Any]], None]], Plan]:
    """Plan a stack (images pinned) after `change` edited its config (a scratch copy of Pulumi.yaml and stacks/)."""

    from pipelines.plan.offline import plan_stack
    from tests.planning import write_stack

    def make(stack: str, change: Callable[[dict[str, Any]], None]) -> Plan:
        write_stack(tmp_path, stack, change)
        return plan_stack(tmp_path, stack)

    return make


# The git flows' world (a bare remote and clones), for tests/integration and tests/faults.
from tests.gitops_world import world  # noqa: E402, F401

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import load_stack
from pipelines.local import LocalEnvironment, UpSummary

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
    from pipelines.images import set_images

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
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalEnvironment, UpSummary]]:
    """The real local environment (moto, MLflow, BentoML on 127.0.0.1), state in a temporary directory."""
    model = load_stack(ROOT, "local").serving.model.name
    env = LocalEnvironment(ROOT, model, home=tmp_path_factory.mktemp("local-env"))
    try:
        summary = env.up()
        yield env, summary
    finally:
        env.down(purge=True)

"""A world for the git flows (promotions, rollbacks, image pins) to run in, for real: a scratch repository
(this project's Pulumi.yaml, stacks, program and model policies, serving a model of its own so the local
environment's registries are left alone) pushed to a bare remote; the person, CI and the deploy job
each work in their own clone, as they would on GitHub. The `world` fixture is registered in
tests/conftest.py (the gitops and fault tests use it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.registry import champion, client_for, registered_name
from pipelines.cli import main
from pipelines.local.environment import LocalEnvironment, UpSummary
from tests.conftest import ROOT, pin_built_images

IDENTITY = {
    "GIT_AUTHOR_NAME": "Pat Promoter",
    "GIT_AUTHOR_EMAIL": "pat@example.invalid",
    "GIT_COMMITTER_NAME": "Pat Promoter",
    "GIT_COMMITTER_EMAIL": "pat@example.invalid",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode:
        raise AssertionError(f"git {' '.join(args)}: {result.stderr}")
    return result.stdout.strip()


@pytest.fixture
def world(
    local_env: tuple[LocalEnvironment, UpSummary], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A bare remote whose main pins version 1 everywhere (synced into all three registries), and version 2
    trained into dev: a world of its own for each test (its own model in the registries, its own remote)."""
    from apps.training.train import train

    env, _ = local_env
    model = f"gitops-{uuid.uuid4().hex[:8]}"
    uri = env.tracking_uri()
    registries = env.registries()  # also points this process at the local object store
    base = tmp_path_factory.mktemp("gitops")
    seed = base / "seed"
    for part in ("stacks", "infra", "policies/models"):
        shutil.copytree(ROOT / part, seed / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "Pulumi.yaml", seed / "Pulumi.yaml")
    for stack in (seed / "stacks").glob("Pulumi.*.yaml"):
        text = re.sub(r"(\n\s+name: )\S+", rf"\g<1>{model}", stack.read_text(), count=1)
        stack.write_text(re.sub(r"(\n\s+version: )null", r"\g<1>1", text, count=1))
    pin_built_images(seed)  # the apps are deployed: a pin change changes their Deployments
    patch = pytest.MonkeyPatch()
    for key, value in IDENTITY.items():
        patch.setenv(key, value)
    for environment in ("dev", "staging", "prod"):
        patch.setenv(f"MLOPS_REGISTRY_{environment.upper()}", uri)
        patch.setenv(f"MLOPS_ARTIFACTS_{environment.upper()}", registries.artifact_locations[environment] or "")
    patch.delenv("GITHUB_SHA", raising=False)
    patch.delenv("GITHUB_ACTOR", raising=False)
    try:
        versions = [train(uri, registered_name("dev", model), experiment="gitops").version for _ in range(2)]
        git(seed, "init", "-q", "-b", "main")
        git(seed, "add", ".")
        git(seed, "commit", "-q", "-m", "Platform with version 1 everywhere")
        remote = base / "origin.git"
        git(base, "init", "-q", "--bare", "-b", "main", str(remote))
        git(seed, "remote", "add", "origin", str(remote))
        git(seed, "push", "-q", "origin", "main")
        clones = {}
        for who in ("person", "ci", "deploy", "other"):
            git(base, "clone", "-q", str(remote), who)
            clones[who] = base / who
        patch.setenv("MLOPS_ROOT", str(clones["deploy"]))
        for environment in ("dev", "staging", "prod"):
            assert main(["sync", "--env", environment]) == 0
        yield {"uri": uri, "model": model, "clones": clones, "remote": remote, "versions": versions, "patch": patch}
    finally:
        patch.undo()


def serving(world: dict[str, Any], environment: str) -> int | None:
    found = champion(client_for(world["uri"]), registered_name(environment, world["model"]))
    return found.model_version if found else None


def remote_state(world: dict[str, Any]) -> dict[str, str]:
    refs = git(world["clones"]["person"], "ls-remote", str(world["remote"]))
    return dict(reversed(line.split("\t")) for line in refs.splitlines())


def registry_state(world: dict[str, Any]) -> dict[str, int | None]:
    return {e: serving(world, e) for e in ("dev", "staging", "prod")}


def in_clone(world: dict[str, Any], who: str, *args: str) -> int:
    world["patch"].setenv("MLOPS_ROOT", str(world["clones"][who]))
    return main(list(args))


def merged_promotion(world: dict[str, Any], environment: str, version: int) -> None:
    """Where a test starts after a promotion: the pull request opened, merged (a fast-forward of main)
    and synced by the deploy job. `test_promotion_through_every_environment_then_rollback` checks each
    of these steps."""
    person, deploy, model = world["clones"]["person"], world["clones"]["deploy"], world["model"]
    git(person, "checkout", "-q", "main")
    git(person, "pull", "-q", "--ff-only", "origin", "main")
    assert in_clone(world, "person", "promote", model, "--version", str(version), "--to", environment, "--no-pr") == 0
    git(person, "push", "-q", "origin", f"promote/{environment}/{model}-v{version}:main")
    git(deploy, "pull", "-q", "--ff-only", "origin", "main")
    assert in_clone(world, "deploy", "sync", "--env", environment) == 0
    assert serving(world, environment) == version


def pin(repo: Path, ref: str, environment: str) -> str:
    text = git(repo, "show", f"{ref}:stacks/Pulumi.{environment}.yaml")
    return re.search(r"\n\s+version: (\S+)", text).group(1)  # type: ignore[union-attr]

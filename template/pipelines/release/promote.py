"""`mlops promote`: open the pull request that changes an environment's model pin, after checking the
version is in the source registry; and which registries this checkout talks to. `sync`, `rollback`
and `report` (`sync.py`, `rollback.py`, `audit.py`) build on it; the decision on a PR is `gate.py`.

Git is the desired state: the pin in `stacks/Pulumi.<env>.yaml` says what an environment serves.
The registries follow git, never the other way around: `sync` copies the pinned version into the
environment's registry (lineage and SHA-256 verified), moves the `champion` alias, and records the
deployment (who, when, commit, pull request) as version tags, which `report` reads back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.errors import BadInput
from infra.config import load_stack, project_name
from infra.settings import PROMOTION_ORDER
from pipelines.common.git import TRAILER_ENV, TRAILER_KIND, Git, commit_branch, undone_if_interrupted
from pipelines.config.stackfiles import stack_path, validate_stack_text
from pipelines.promotion.registries import Registries, source_of
from pipelines.release.pins import (
    TRAILER_MODEL,
    TRAILER_PREVIOUS,
    TRAILER_VERSION,
    pin_at,
    pin_in,
    set_pin,
    set_shadow,
    shadow_in,
)

DEPLOY = "deploy"


def configured_registries(root: Path) -> Registries:
    """Each environment's MLflow: `MLOPS_REGISTRY_<ENV>` (CI sets them from the stacks' outputs), or
    else the running local environment (`mlops local up`), which holds all three registries."""
    envs = [e.value for e in PROMOTION_ORDER]
    uris = {e: os.environ.get(f"MLOPS_REGISTRY_{e.upper()}", "") for e in envs}
    if any(uris.values()):
        missing = [f"MLOPS_REGISTRY_{e.upper()}" for e, uri in uris.items() if not uri]
        if missing:
            raise BadInput(f"registries are configured by environment variables, but {', '.join(missing)} is not set")
        artifacts = {e: os.environ.get(f"MLOPS_ARTIFACTS_{e.upper()}") or None for e in envs}
        return Registries(tracking_uris=uris, artifact_locations=artifacts)
    local = local_environment(root)
    if "tracking" not in local.running():
        raise BadInput(
            "no model registry configured",
            hint="set MLOPS_REGISTRY_DEV, MLOPS_REGISTRY_STAGING and MLOPS_REGISTRY_PROD (each environment's MLflow), "
            "or start the local environment with `mlops local up`",
        )
    return local.registries()


def local_environment(root: Path) -> Any:
    """This checkout's local environment (`mlops local up`), in `MLOPS_LOCAL_HOME` when that is set."""
    from pipelines.local.environment import LocalEnvironment  # noqa: PLC0415

    home = os.environ.get("MLOPS_LOCAL_HOME")
    return LocalEnvironment(root, load_stack(root, "local").serving.model.name, home=Path(home) if home else None)


def model_and_order(
    root: Path, environment: str, model: str | None, action: str = "promote to"
) -> tuple[str, str | None]:
    source = source_of(environment, action)  # BadInput for an environment outside dev → staging → prod
    pinned = load_stack(root, environment).serving.model.name
    if model is not None and model != pinned:
        raise BadInput(f"stacks/Pulumi.{environment}.yaml serves model {pinned!r}, not {model!r}")
    return pinned, source


def github_repository(root: Path, environment: str) -> str | None:
    settings = load_stack(root, environment)
    return settings.github.repository if settings.github else None


@dataclass
class PromotionRequest:
    environment: str
    model: str
    version: int
    previous: int | None
    branch: str
    commit: str
    pushed: bool
    pull_request: str | None = None
    next_steps: list[str] = field(default_factory=list)


def request_promotion(
    root: Path,
    model: str,
    version: int,
    environment: str,
    *,
    remote: str = "origin",
    base: str = "main",
    push_branch: bool = True,
    open_pr: bool = True,
    registries: Registries | None = None,
    shadow: bool = False,
    sample_pct: float = 10,
) -> PromotionRequest:
    """Commit the pin change on a new branch from the remote's base, push it and open a pull request.
    With `shadow`, the change sets `serving.shadow` instead: the version scores a sample of the
    environment's requests beside the served one (the evidence its promotion is then gated on)."""
    if version < 1:
        raise BadInput(f"--version must be a positive model version (got {version})")
    if not 0 < sample_pct <= 100:
        raise BadInput(f"--sample-pct must be in (0, 100] (got {sample_pct:g})")
    model, source = model_and_order(root, environment, model)
    git = Git(root)
    base_ref = git.start_change(remote, base)
    path = stack_path(root, environment)
    text = git.show(base_ref, path)
    if text is None:
        raise BadInput(f"{base_ref} has no {path}: the {environment} environment does not exist there yet")
    project = project_name(root)
    _, current, _ = pin_in(text, f"{path} at {base_ref}", project)
    if current == version:
        raise BadInput(f"{environment} already serves {model} version {version} on {base_ref}: nothing to promote")
    if shadow:
        _require_shadowable(text, f"{path} at {base_ref}", project, environment, model, version, current)
    if source is not None:
        serving = pin_at(git, base_ref, source)
        if serving != version:
            raise BadInput(
                f"{model} version {version} is not what {source} serves on {base_ref} "
                f"({f'version {serving}' if serving else 'nothing'}): promotions may not skip an environment",
                hint=f"promote version {version} to {source} first, or promote version {serving} to {environment}"
                if serving
                else f"promote a version to {source} first",
            )
    else:
        _require_in_registry(registries or configured_registries(root), "dev", model, version)
    branch = f"{'shadow' if shadow else 'promote'}/{environment}/{model}-v{version}"
    if git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"):
        raise BadInput(
            f"a local branch {branch} exists: this promotion is already under way",
            hint=f"finish its pull request, or delete the branch (`git branch -D {branch}`) and run again",
        )
    if shadow:
        new_text = set_shadow(text, path, project, version, sample_pct)
        subject = f"Shadow {model} v{version} in {environment}"
        said = (
            f"{environment} serves version {current}; version {version} scores {sample_pct:g} % of requests beside it"
        )
        kind, changed_lines = "shadow", ["1", "1", path]
    else:
        new_text = set_pin(text, path, project, version)
        subject = f"Promote {model} v{version} to {environment}"
        said = f"{environment} served {f'version {current}' if current else 'nothing'}"
        kind = "promotion"
        # exactly the pin line, and the shadow line when the promoted version was the shadow
        changed_lines = ["2", "2", path] if shadow_in(text, path, project)[0] == version else ["1", "1", path]
    validate_stack_text(root, environment, new_text)
    body = (
        said
        + (f"; {source} serves version {version}." if source else f"; version {version} is in the dev registry.")
        + "\n\n"
        + promotion_trailers(kind, environment, model, version, current)
    )
    with undone_if_interrupted(git, branch, remote):
        commit = commit_branch(
            git,
            base_ref,
            (path, new_text),
            message=f"{subject}\n\n{body}",
            branch=branch,
            remote=remote,
            push_branch=push_branch,
            expect_numstat=changed_lines,
        )
        request = PromotionRequest(environment, model, version, current, branch, commit, pushed=push_branch)
        title_body = (subject, f"{body}\n\nThe `promote` workflow runs `mlops gate --env {environment}` on this PR.")
        open_pull_request(
            root, request, base=base, remote=remote, title_body=title_body, open_pr=open_pr and push_branch
        )
    return request


def _require_shadowable(  # noqa: PLR0917 -- the file and the change asked for
    text: str, source: str, project: str, environment: str, model: str, version: int, current: int | None
) -> None:
    if current is None:
        raise BadInput(
            f"{environment} serves nothing ({source}): a shadow would have nothing to be compared with",
            hint=f"promote version {version} to {environment} without --shadow",
        )
    if shadow_in(text, source, project)[0] == version:
        raise BadInput(f"{environment} already shadows {model} version {version} ({source})")


def promotion_trailers(kind: str, environment: str, model: str, version: int | None, previous: int | None) -> str:
    return (
        f"{TRAILER_KIND}: {kind}\n{TRAILER_ENV}: {environment}\n{TRAILER_MODEL}: {model}\n"
        f"{TRAILER_VERSION}: {version if version is not None else 'none'}\n"
        f"{TRAILER_PREVIOUS}: {previous if previous is not None else 'none'}"
    )


def _require_in_registry(registries: Registries, environment: str, model: str, version: int) -> None:
    from core.registry import client_for, find_by_model_version, guarded, registered_model_exists, registered_name  # noqa: PLC0415

    uri = registries.uri(environment)
    name = registered_name(environment, model)
    with guarded(f"looking up {model} version {version}", uri):
        client = client_for(uri)
        if not registered_model_exists(client, name) or find_by_model_version(client, name, version) is None:
            raise BadInput(
                f"{model} version {version} is not in the {environment} registry ({name})",
                hint="train it first (`mlops train`), or pick a version `mlops report --env dev` lists",
            )


class BranchRequest(Protocol):
    """A change pushed as a branch that wants a pull request (a promotion, an image pin)."""

    environment: str
    branch: str
    pushed: bool
    pull_request: str | None
    next_steps: list[str]


def open_pull_request(
    root: Path, request: BranchRequest, *, base: str, remote: str, title_body: tuple[str, str], open_pr: bool
) -> None:
    title, body = title_body
    repository = github_repository(root, request.environment)
    if open_pr and shutil.which("gh"):
        result = subprocess.run(
            ["gh", "pr", "create", "--base", base, "--head", request.branch, "--title", title, "--body", body],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode == 0:
            request.pull_request = result.stdout.strip().splitlines()[-1]
            return
        request.next_steps.append(f"`gh pr create` failed ({result.stderr.strip()}); open the pull request by hand:")
    if not request.pushed:
        request.next_steps.append(f"git push {remote} {request.branch}")
    compare = f"https://github.com/{repository}/compare/{base}...{request.branch}?expand=1" if repository else None
    request.next_steps.append(
        f"gh pr create --base {base} --head {request.branch} --title {title!r}"
        + (f"   (or open {compare})" if compare else "")
    )

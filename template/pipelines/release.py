"""Model releases by pull request: promote (open the PR), sync (make a registry follow git), rollback
(revert the last promotion) and the audit trail. The decision on a PR is `pipelines.gate`.

Git is the desired state: the pin in `stacks/Pulumi.<env>.yaml` says what an environment serves.
The registries follow git, never the other way around: `sync` copies the pinned version into the
environment's registry (lineage and SHA-256 verified), moves the `champion` alias, and records the
deployment (who, when, commit, pull request) as version tags, which `report` reads back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from infra.config import load_stack, project_name
from infra.settings import PROMOTION_ORDER
from pipelines.errors import BadInput, CheckFailed, EnvironmentProblem
from pipelines.gitops import (
    TRAILER_ENV,
    TRAILER_KIND,
    TRAILER_MODEL,
    TRAILER_PREVIOUS,
    TRAILER_VERSION,
    Git,
    PinChange,
    commit_branch,
    pin_at,
    pin_history,
    pin_in,
    pull_request_of,
    push,
    set_pin,
    stack_path,
    validate_stack_text,
)
from pipelines.promotion import Registries, source_of

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
    from pipelines.local import LocalEnvironment  # noqa: PLC0415

    home = os.environ.get("MLOPS_LOCAL_HOME")
    local = LocalEnvironment(root, load_stack(root, "local").serving.model.name, home=Path(home) if home else None)
    if "tracking" not in local.running():
        raise BadInput(
            "no model registry configured",
            hint="set MLOPS_REGISTRY_DEV, MLOPS_REGISTRY_STAGING and MLOPS_REGISTRY_PROD (each environment's MLflow), "
            "or start the local environment with `mlops local up`",
        )
    return local.registries()


def _model_and_order(root: Path, environment: str, model: str | None) -> tuple[str, str | None]:
    source = source_of(environment)  # BadInput for an environment outside dev → staging → prod
    pinned = load_stack(root, environment).serving.model.name
    if model is not None and model != pinned:
        raise BadInput(f"stacks/Pulumi.{environment}.yaml serves model {pinned!r}, not {model!r}")
    return pinned, source


def github_repository(root: Path, environment: str) -> str | None:
    settings = load_stack(root, environment)
    return settings.github.repository if settings.github else None


# --- promote --------------------------------------------------------------------------------------


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
) -> PromotionRequest:
    """Commit the pin change on a new branch from the remote's base, push it and open a pull request."""
    if version < 1:
        raise BadInput(f"--version must be a positive model version (got {version})")
    model, source = _model_and_order(root, environment, model)
    git = Git(root)
    git.require_repository()
    git.require_clean()
    git.require_remote(remote)
    git.fetch(remote, base)
    base_ref = f"{remote}/{base}"
    path = stack_path(root, environment)
    text = git.show(base_ref, path)
    if text is None:
        raise BadInput(f"{base_ref} has no {path}: the {environment} environment does not exist there yet")
    project = project_name(root)
    _, current, _ = pin_in(text, f"{path} at {base_ref}", project)
    if current == version:
        raise BadInput(f"{environment} already serves {model} version {version} on {base_ref}: nothing to promote")
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
    branch = f"promote/{environment}/{model}-v{version}"
    if git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"):
        raise BadInput(
            f"a local branch {branch} exists: this promotion is already under way",
            hint=f"finish its pull request, or delete the branch (`git branch -D {branch}`) and run again",
        )
    new_text = set_pin(text, path, project, version)
    validate_stack_text(root, environment, new_text)
    subject = f"Promote {model} v{version} to {environment}"
    body = (
        f"{environment} served {f'version {current}' if current else 'nothing'}"
        + (f"; {source} serves version {version}." if source else f"; version {version} is in the dev registry.")
        + "\n\n"
        + _trailers("promotion", environment, model, version, current)
    )
    commit = commit_branch(
        git,
        base_ref,
        (path, new_text),
        message=f"{subject}\n\n{body}",
        branch=branch,
        remote=remote,
        push_branch=push_branch,
        expect_numstat=["1", "1", path],  # exactly the pin line
    )
    request = PromotionRequest(environment, model, version, current, branch, commit, pushed=push_branch)
    title_body = (subject, f"{body}\n\nThe `promote` workflow runs `mlops gate --env {environment}` on this PR.")
    open_pull_request(root, request, base=base, remote=remote, title_body=title_body, open_pr=open_pr and push_branch)
    return request


def _trailers(kind: str, environment: str, model: str, version: int | None, previous: int | None) -> str:
    return (
        f"{TRAILER_KIND}: {kind}\n{TRAILER_ENV}: {environment}\n{TRAILER_MODEL}: {model}\n"
        f"{TRAILER_VERSION}: {version if version is not None else 'none'}\n"
        f"{TRAILER_PREVIOUS}: {previous if previous is not None else 'none'}"
    )


def _require_in_registry(registries: Registries, environment: str, model: str, version: int) -> None:
    from pipelines.registry import (  # noqa: PLC0415
        client_for,
        find_by_model_version,
        guarded,
        registered_model_exists,
        registered_name,
    )

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


# --- sync -----------------------------------------------------------------------------------------


@dataclass
class SyncResult:
    environment: str
    model: str
    version: int | None
    previous: int | None = None
    copied: bool = False
    alias_moved: bool = False
    recorded: bool = False

    @property
    def changed(self) -> bool:
        return self.copied or self.alias_moved or self.recorded


def deployment_context(root: Path, commit: str | None, pull_request: int | None, actor: str | None) -> dict[str, str]:
    """Who/what deploys: arguments first, then the CI's variables, then git."""
    git = Git(root)
    commit = commit or os.environ.get("GITHUB_SHA") or git.run("rev-parse", "HEAD")
    if pull_request is None:
        pull_request = pull_request_of(git.run("log", "-1", "--format=%s", commit, check=False))
    actor = actor or os.environ.get("GITHUB_ACTOR") or git.run("log", "-1", "--format=%an", commit, check=False)
    return {"commit": commit, "pr": str(pull_request) if pull_request else "", "by": actor or "unknown"}


def sync(
    root: Path,
    environment: str,
    registries: Registries,
    context: dict[str, str],
    *,
    approved_by: str | None = None,
) -> SyncResult:
    """Make `environment`'s registry serve what its stack file pins; record the deployment. Idempotent."""
    from pipelines.registry import (  # noqa: PLC0415
        CHAMPION,
        champion,
        client_for,
        copy_version,
        find_by_model_version,
        guarded,
        registered_model_exists,
        registered_name,
    )

    model, source = _model_and_order(root, environment, None)
    version = load_stack(root, environment).serving.model.version
    result = SyncResult(environment, model, version)
    if version is None:
        return result  # nothing pinned: nothing to serve
    target_uri = registries.uri(environment)
    target_name = registered_name(environment, model)
    with guarded(f"syncing {environment}", target_uri):
        client = client_for(target_uri)
        exists = registered_model_exists(client, target_name)
        current = champion(client, target_name) if exists else None
        result.previous = current.model_version if current else None
        target = find_by_model_version(client, target_name, version) if exists else None
        if target is None:
            if source is None:
                raise BadInput(f"{model} version {version} is not in the dev registry ({target_name}): train it first")
            source_uri = registries.uri(source)
            source_name = registered_name(source, model)
            origin = find_by_model_version(client_for(source_uri), source_name, version)
            if origin is None:
                raise BadInput(
                    f"{model} version {version} is in neither the {environment} nor the {source} registry",
                    hint=f"the pin must name a version {source} has served (`mlops report --env {source}`)",
                )
            target = copy_version(
                source_uri=source_uri,
                source=origin,
                target_uri=target_uri,
                target_name=target_name,
                experiment=f"registry-{environment}",
                artifact_location=registries.artifact_locations.get(environment),
                extra_tags={"promoted_from": source, "promoted_by": context["by"]},
            )
            result.copied = True
        if current is None or current.registry_version != target.registry_version:
            client.set_registered_model_alias(target_name, CHAMPION, str(target.registry_version))
            result.alias_moved = True
        prefix = f"{DEPLOY}.{environment}"
        if result.alias_moved or target.tags.get(f"{prefix}.commit") != context["commit"]:
            tags = {
                f"{prefix}.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                f"{prefix}.by": context["by"],
                f"{prefix}.commit": context["commit"],
                f"{prefix}.pr": context["pr"],
                f"{prefix}.approved_by": approved_by or "",
            }
            for key, value in tags.items():
                client.set_model_version_tag(target_name, str(target.registry_version), key, value)
            result.recorded = True
    return result


# --- rollback -------------------------------------------------------------------------------------


@dataclass
class RollbackResult:
    environment: str
    model: str
    reverted: PinChange
    commit: str
    pushed_to: str
    branch: str | None = None
    pull_request: str | None = None
    next_steps: list[str] = field(default_factory=list)


def rollback(
    root: Path,
    environment: str,
    *,
    remote: str = "origin",
    base: str = "main",
    direct: bool = False,
    open_pr: bool = True,
    reason: str = "",
) -> RollbackResult:
    """Revert the last promotion of `environment` on the remote's base: a pull request, or (direct) a push."""
    model, _ = _model_and_order(root, environment, None)
    git = Git(root)
    git.require_repository()
    git.require_clean()
    git.require_remote(remote)
    git.fetch(remote, base)
    base_ref = f"{remote}/{base}"
    history = pin_history(git, environment, base_ref)
    if not history:
        raise BadInput(f"{base_ref} has no change of {environment}'s pin to roll back")
    last = history[0]
    if last.kind == "rollback":
        raise BadInput(
            f"the last change of {environment}'s pin is already a rollback "
            f"(to version {last.after} in {last.commit[:8]}): nothing to roll back",
            hint="to go further back, promote that version explicitly",
        )
    path = stack_path(root, environment)
    subject = f"Roll back {environment} to {model} v{last.before}" if last.before else f"Roll back {environment}"
    body = (
        f"Reverts {last.commit[:12]} ({last.subject})."
        + (f"\nReason: {reason}" if reason else "")
        + "\n\n"
        + _trailers("rollback", environment, model, last.before, last.after)
    )
    with git.worktree(base_ref) as tree:
        parents = git.run("rev-list", "--parents", "-n", "1", last.commit, cwd=tree).split()[1:]
        revert = ["revert", "--no-commit", *(["-m", "1"] if len(parents) > 1 else []), last.commit]
        if subprocess.run(["git", *revert], cwd=tree, capture_output=True, timeout=120, check=False).returncode:
            raise CheckFailed(
                f"reverting {last.commit[:12]} conflicts with later changes of {path}",
                hint="edit the pin back by hand in a pull request",
            )
        changed = git.run("diff", "--cached", "--name-only", cwd=tree).split()
        if changed != [path]:
            raise CheckFailed(
                f"the promotion commit {last.commit[:12]} changed more than {path} ({', '.join(changed)})",
                hint="revert it by hand in a pull request",
            )
        git.run("commit", "--quiet", "-m", f"{subject}\n\n{body}", cwd=tree)
        commit = git.run("rev-parse", "HEAD", cwd=tree)
        if direct:
            push(git, tree, remote, f"HEAD:refs/heads/{base}", f"the rollback to {base}")
            return RollbackResult(environment, model, last, commit, pushed_to=base)
        branch = f"rollback/{environment}-{last.commit[:8]}"
        git.run("branch", "--force", branch, commit)
        try:
            push(git, tree, remote, f"{branch}:refs/heads/{branch}", f"branch {branch}")
        except CheckFailed:
            git.run("branch", "-D", branch, check=False)
            raise
    result = RollbackResult(environment, model, last, commit, pushed_to=branch, branch=branch)
    request = PromotionRequest(environment, model, last.before or 0, last.after, branch, commit, pushed=True)
    open_pull_request(root, request, base=base, remote=remote, title_body=(subject, body), open_pr=open_pr)
    result.pull_request, result.next_steps = request.pull_request, request.next_steps
    return result


# --- report ---------------------------------------------------------------------------------------


@dataclass
class AuditEntry:
    change: PinChange
    until: str | None
    gate: dict[str, str]
    deployment: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        c = self.change
        return {
            "environment": c.environment,
            "kind": c.kind,
            "version": c.after,
            "previous": c.before,
            "commit": c.commit,
            "date": c.date,
            "until": self.until,
            "author": c.author,
            "pull_request": c.pull_request,
            "gate": self.gate,
            "deployment": self.deployment,
        }


def audit_trail(
    root: Path, environment: str, ref: str = "HEAD", registries: Registries | None = None
) -> tuple[list[AuditEntry], list[str]]:
    """Which version served when (git), who merged and deployed it, which gates it passed (registry tags)."""
    model, source = _model_and_order(root, environment, None)
    git = Git(root)
    git.require_repository()
    git.commit_of(ref)
    history = pin_history(git, environment, ref)
    warnings: list[str] = []
    tags: dict[int, dict[str, str]] = {}
    gate_tags: dict[int, dict[str, str]] = {}
    if registries is not None:
        try:
            tags = _version_tags(registries.uri(environment), environment, model)
            gate_tags = _version_tags(registries.uri(source or environment), source or environment, model)
        except (EnvironmentProblem, BadInput) as exc:
            warnings.append(f"registry not read: {exc.message}")
    entries = []
    for index, change in enumerate(history):
        until = history[index - 1].date if index else None
        version_tags = tags.get(change.after or -1, {})
        candidate = gate_tags.get(change.after or -1, {})
        entries.append(
            AuditEntry(
                change,
                until,
                gate={k.split(".", 2)[2]: v for k, v in candidate.items() if k.startswith(f"gate.{environment}.")},
                deployment={
                    k.split(".", 2)[2]: v for k, v in version_tags.items() if k.startswith(f"{DEPLOY}.{environment}.")
                },
            )
        )
    return entries, warnings


def _version_tags(uri: str, environment: str, model: str) -> dict[int, dict[str, str]]:
    from pipelines.registry import client_for, guarded, registered_model_exists, registered_name  # noqa: PLC0415

    name = registered_name(environment, model)
    with guarded(f"reading {name}", uri):
        client = client_for(uri)
        if not registered_model_exists(client, name):
            return {}
        found: dict[int, dict[str, str]] = {}
        for version in client.search_model_versions(f"name = '{name}'"):
            version_tags = dict(version.tags or {})
            found[int(version_tags.get("model_version", version.version))] = version_tags
        return found

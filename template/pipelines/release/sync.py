"""`mlops sync`: make an environment's registry follow git (copy the pinned version with lineage, move
the alias), recording which deployment did it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput
from infra.config import load_stack
from pipelines.common.git import Git, pull_request_of
from pipelines.promotion.registries import Registries
from pipelines.release.promote import DEPLOY, model_and_order


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
    from core.registry import (  # noqa: PLC0415
        CHAMPION,
        champion,
        client_for,
        copy_version,
        find_by_model_version,
        guarded,
        registered_model_exists,
        registered_name,
        verify_artifacts,
    )

    model, source = model_and_order(root, environment, None, action="sync")
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
        elif current is None or current.registry_version != target.registry_version:
            verify_artifacts(target_uri, target)  # never point the alias at a version whose artifacts are gone
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

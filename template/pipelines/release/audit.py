"""`mlops report`: the audit trail of an environment, from git's pin history and the registry's tags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import BadInput, EnvironmentProblem
from core.registry import LINEAGE_TAGS
from pipelines.common.git import Git
from pipelines.promotion.registries import Registries
from pipelines.release.pins import PinChange, pin_history
from pipelines.release.promote import DEPLOY, model_and_order


@dataclass
class AuditEntry:
    change: PinChange
    until: str | None
    gate: dict[str, str]
    deployment: dict[str, str]
    lineage: dict[str, str]

    @property
    def trained_on(self) -> str | None:
        """`NAME@VERSION (sha…)` of the dataset version, `bundled data (sha…)` without one, None unread."""
        sha = self.lineage.get("dataset_sha256", "")[:12]
        if "dataset_name" in self.lineage:
            return f"{self.lineage['dataset_name']}@{self.lineage.get('dataset_version', '?')} ({sha})"
        return f"bundled data ({sha})" if sha else None

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
            "lineage": self.lineage,
        }


def audit_trail(
    root: Path, environment: str, ref: str = "HEAD", registries: Registries | None = None
) -> tuple[list[AuditEntry], list[str]]:
    """Which version served when (git), who merged and deployed it, which gates it passed (registry tags)."""
    model, source = model_and_order(root, environment, None, action="report on")
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
                lineage={k: v for k, v in version_tags.items() if k in LINEAGE_TAGS},  # copied with the version
            )
        )
    return entries, warnings


def _version_tags(uri: str, environment: str, model: str) -> dict[int, dict[str, str]]:
    from core.registry import client_for, guarded, registered_model_exists, registered_name  # noqa: PLC0415

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

"""Promote a model version into an environment's registry: gate it, copy it with lineage, move the alias.

The order of writes makes every interruption safe: decision tags and a verified copy come first,
the `champion` alias moves last. A re-run after a failure converges (a verified copy is reused);
a failed gate or an interrupted copy never moves an alias, so the previous version keeps serving.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, CheckFailed
from core.registry import (
    CHAMPION,
    VersionInfo,
    champion,
    client_for,
    copy_version,
    find_by_model_version,
    guarded,
    has_signature,
    registered_model_exists,
    registered_name,
    verified_download,
)
from infra.settings import PROMOTION_ORDER
from policies.models import POLICY_DIR, Evidence, ModelPolicy, PolicyError, Verdict, evaluate, load_policy


@dataclass(frozen=True)
class Registries:
    """Where each environment's registry lives, and where copies' artifacts go."""

    tracking_uris: dict[str, str]
    artifact_locations: dict[str, str | None]

    def uri(self, environment: str) -> str:
        try:
            return self.tracking_uris[environment]
        except KeyError:
            raise BadInput(f"no registry configured for environment {environment!r}") from None


@dataclass(frozen=True)
class Promotion:
    verdict: Verdict
    target: VersionInfo
    previous_model_version: int | None

    @property
    def changed(self) -> bool:
        return self.previous_model_version != self.target.model_version


class PromotionRefused(CheckFailed):
    def __init__(self, verdict: Verdict) -> None:
        reasons = "; ".join(f"{rule.rule}: {rule.detail}" for rule in verdict.failures)
        super().__init__(
            f"promotion of {verdict.model} version {verdict.model_version} to {verdict.environment} refused: {reasons}",
            hint=f"{verdict.environment} keeps serving its previous version",
        )
        self.verdict = verdict

    def __reduce__(self) -> tuple[type, tuple[Verdict]]:  # type: ignore[override]
        return (type(self), (self.verdict,))


def source_of(environment: str, action: str = "promote to") -> str | None:
    """The environment `environment` takes its versions from (None for dev); `action` names what was asked."""
    order = [e.value for e in PROMOTION_ORDER]
    if environment not in order:
        raise BadInput(
            f"cannot {action} {environment!r}: it is not one of the environments models go through "
            f"({' → '.join(order)})"
        )
    index = order.index(environment)
    return order[index - 1] if index else None


def judge(
    policy: ModelPolicy, uri: str, model: str, candidate: VersionInfo, source_serving_version: int | None
) -> Verdict:
    """The policy's verdict on a registry version: its metrics and tags, and its signature (downloaded)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = verified_download(uri, candidate, Path(tmp))
        signature = has_signature(model_dir)
    return evaluate(
        policy,
        Evidence(
            model=model,
            model_version=candidate.model_version,
            metrics=candidate.metrics,
            tags=candidate.tags,
            has_signature=signature,
            source_serving_version=source_serving_version,
        ),
    )


def promote(
    model: str,
    model_version: int,
    environment: str,
    registries: Registries,
    *,
    policy_dir: Path = POLICY_DIR,
    actor: str = "mlops",
) -> Promotion:
    """Gate `model_version` against `environment`'s policy and make it what `environment` serves."""
    if model_version < 1:
        raise BadInput(f"--version must be a positive model version (got {model_version})")
    source_env = source_of(environment)
    try:
        policy = load_policy(environment, policy_dir)
    except PolicyError as exc:
        raise BadInput(str(exc)) from None
    target_uri = registries.uri(environment)
    target_name = registered_name(environment, model)
    candidate_env = source_env or environment
    candidate_uri = registries.uri(candidate_env)
    candidate_name = registered_name(candidate_env, model)
    with guarded(f"promoting {model} version {model_version} to {environment}", candidate_uri):
        candidate_client = client_for(candidate_uri)
        if not registered_model_exists(candidate_client, candidate_name):
            raise BadInput(f"unknown model {model!r}: the {candidate_env} registry has no {candidate_name}")
        candidate = find_by_model_version(candidate_client, candidate_name, model_version)
        serving = champion(candidate_client, candidate_name) if source_env else None
        if candidate is None:
            if source_env is None:
                raise BadInput(
                    f"{model} version {model_version} is not in the dev registry ({candidate_name}): "
                    "train it first (`mlops train`)"
                )
            raise BadInput(
                f"{model} version {model_version} is not in the {source_env} registry ({candidate_name}): "
                f"promotions may not skip an environment; promote it to {source_env} first "
                f"({source_env} serves {f'version {serving.model_version}' if serving else 'nothing yet'})"
            )
        verdict = judge(policy, candidate_uri, model, candidate, serving.model_version if serving else None)
        record_decision(candidate_client, candidate, verdict, actor)
    if not verdict.passed:
        raise PromotionRefused(verdict)
    with guarded(f"copying {model} version {model_version} into {environment}", target_uri):
        target_client = client_for(target_uri)
        previous = champion(target_client, target_name) if registered_model_exists(target_client, target_name) else None
        if source_env is None:
            target = candidate
        else:
            target = copy_version(
                source_uri=candidate_uri,
                source=candidate,
                target_uri=target_uri,
                target_name=target_name,
                experiment=f"registry-{environment}",
                artifact_location=registries.artifact_locations.get(environment),
                extra_tags={"promoted_from": source_env, "promoted_by": actor},
            )
            record_decision(target_client, target, verdict, actor)
        target_client.set_registered_model_alias(target_name, CHAMPION, str(target.registry_version))
    return Promotion(verdict, target, previous.model_version if previous else None)


def record_decision(client: object, version: VersionInfo, verdict: Verdict, actor: str) -> None:
    prefix = f"gate.{verdict.environment}"
    tags = {
        f"{prefix}.passed": str(verdict.passed).lower(),
        f"{prefix}.at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        f"{prefix}.by": actor,
        f"{prefix}.rules": json.dumps([r.__dict__ for r in verdict.rules])[:4900],
    }
    for key, value in tags.items():
        client.set_model_version_tag(version.registered_model, str(version.registry_version), key, value)  # type: ignore[attr-defined]

"""Promote a model version into an environment's registry: gate it, copy it with lineage, move the alias.

The order of writes makes every interruption safe: decision tags and a verified copy come first,
the `champion` alias moves last. A re-run after a failure converges (a verified copy is reused);
a failed gate or an interrupted copy never moves an alias, so the previous version keeps serving.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import BadInput, CheckFailed
from core.registry import (
    CHAMPION,
    SHADOW,
    VersionInfo,
    by_alias,
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
from policies.models import (
    POLICY_DIR,
    Evidence,
    ModelPolicy,
    PolicyError,
    ShadowEvidence,
    Verdict,
    evaluate,
    load_policy,
)


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
    policy: ModelPolicy,
    uri: str,
    model: str,
    candidate: VersionInfo,
    source_serving_version: int | None,
    *,
    served_version: int | None = None,
    shadow: ShadowEvidence | None = None,
) -> Verdict:
    """The policy's verdict on a registry version: its metrics and tags, its signature (downloaded), and
    what it did as the target environment's shadow beside `served_version`."""
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
            served_version=served_version,
            shadow=shadow,
        ),
    )


# What a promotion reads for the shadow rules: (served model version, candidate) -> evidence or None.
EvidenceReader = Callable[[int, int], "ShadowEvidence | None"]


def promote(
    model: str,
    model_version: int,
    environment: str,
    registries: Registries,
    *,
    policy_dir: Path = POLICY_DIR,
    actor: str = "mlops",
    shadow: bool = False,
    evidence: EvidenceReader | None = None,
) -> Promotion:
    """Gate `model_version` against `environment`'s policy and make it what `environment` serves; with
    `shadow`, what it scores beside the served version instead (alias `shadow`: every rule but the shadow
    evidence it is about to gather). `evidence` reads that evidence for the shadow rules."""
    if model_version < 1:
        raise BadInput(f"--version must be a positive model version (got {model_version})")
    source_env = source_of(environment)
    try:
        policy = load_policy(environment, policy_dir)
    except PolicyError as exc:
        raise BadInput(str(exc)) from None
    if shadow:
        policy = policy.without_shadow()
    alias = SHADOW if shadow else CHAMPION
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
            raise _not_in_source(model, model_version, source_env, candidate_name, serving)
        with guarded(f"reading what {environment} serves", target_uri):
            served = _served(target_uri, target_name)
        if shadow:
            _require_something_to_shadow(environment, served, model_version)
        seen = None
        if policy.shadow is not None and served is not None and evidence is not None:
            seen = evidence(served.model_version, model_version)
        verdict = judge(
            policy,
            candidate_uri,
            model,
            candidate,
            serving.model_version if serving else None,
            served_version=served.model_version if served else None,
            shadow=seen,
        )
        record_decision(candidate_client, candidate, verdict, f"{actor} (shadow)" if shadow else actor)
    if not verdict.passed:
        raise PromotionRefused(verdict)
    with guarded(f"copying {model} version {model_version} into {environment}", target_uri):
        target_client = client_for(target_uri)
        previous = served
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
        target_client.set_registered_model_alias(target_name, alias, str(target.registry_version))
        if not shadow:
            shadowed = by_alias(target_client, target_name, SHADOW)
            if shadowed is not None and shadowed.model_version == target.model_version:
                target_client.delete_registered_model_alias(target_name, SHADOW)  # it serves now
    return Promotion(verdict, target, previous.model_version if previous else None)


def _not_in_source(
    model: str, model_version: int, source_env: str | None, candidate_name: str, serving: VersionInfo | None
) -> BadInput:
    if source_env is None:
        return BadInput(
            f"{model} version {model_version} is not in the dev registry ({candidate_name}): "
            "train it first (`mlops train`)"
        )
    return BadInput(
        f"{model} version {model_version} is not in the {source_env} registry ({candidate_name}): "
        f"promotions may not skip an environment; promote it to {source_env} first "
        f"({source_env} serves {f'version {serving.model_version}' if serving else 'nothing yet'})"
    )


def _require_something_to_shadow(environment: str, served: VersionInfo | None, model_version: int) -> None:
    if served is None or served.model_version == model_version:
        raise BadInput(
            f"{environment} serves {f'version {served.model_version}' if served else 'nothing yet'}: "
            f"a shadow of version {model_version} would have nothing to be compared with",
            hint=f"promote it to {environment} directly" if served is None else "pick another version",
        )


def _served(uri: str, name: str) -> VersionInfo | None:
    client = client_for(uri)
    return champion(client, name) if registered_model_exists(client, name) else None


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

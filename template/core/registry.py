"""Model registry operations that training, serving and promotion share, against any MLflow server.

Each environment has its own registered model (`<env>.<model>`; in the cloud, on its own server).
A model's identity across environments is its **model version**: the version number it got when it
was trained into the dev registry. Every copy carries that number in the `model_version` tag, with
its lineage and the SHA-256 of its artifacts, and the alias `champion` marks what an environment serves.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from core.errors import BadInput, CheckFailed, EnvironmentProblem

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# A dead server must fail a command in seconds, not after MLflow's default ~2 minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Models carry explicit pip requirements; copying the project's uv.lock into each one costs seconds and MBs.
os.environ.setdefault("MLFLOW_LOG_UV_FILES", "false")
# Run links go to stdout, which belongs to `--format json` output.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

CHAMPION = "champion"
# The version an environment scores beside its champion, answering nothing (`serving.shadow`; locally an alias).
SHADOW = "shadow"
# Written by MLflow into every `models:/` download; it names the registry, so it is not part of the model.
REGISTRY_META_FILE = "registered_model_meta"
# Copied with every version to the next registry (those a version lacks are left out): what it is, what made
# it and from which data (apps/training/datasets.py names the dataset ones), and its explanation.
LINEAGE_TAGS = (
    "model_version",
    "git_sha",
    "dataset_sha256",
    "training_config",
    "artifact_sha256",
    "explanation",
    "dataset_name",
    "dataset_version",
    "dataset_store",
    "features_dataset",
    "features_sha256",
    "feature_code",
    "feature_code_sha",
    "training_run_id",
)


def registered_name(environment: str, model: str) -> str:
    return f"{environment}.{model}"


@dataclass(frozen=True)
class VersionInfo:
    """What promotion decides on: one registry version with its run's metrics and its tags."""

    registered_model: str
    registry_version: int
    model_version: int
    tags: dict[str, str]
    metrics: dict[str, float]
    params: dict[str, str]
    run_id: str | None


def client_for(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient  # noqa: PLC0415 -- keep `mlops --help` fast

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def artifact_digest(directory: Path) -> str:
    """SHA-256 over every file's relative path and content, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != REGISTRY_META_FILE):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def download_version(tracking_uri: str, name: str, registry_version: int, destination: Path) -> Path:
    """Download a version's artifacts from the registry at `tracking_uri`.

    The location is resolved through a client bound to that server: a `models:/` URI would be resolved
    against MLflow's process-wide registry URI, which is the wrong server when registries are separate.
    """
    import mlflow  # noqa: PLC0415

    location = client_for(tracking_uri).get_model_version_download_uri(name, str(registry_version))
    path = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(destination), tracking_uri=tracking_uri)
    )
    (path / REGISTRY_META_FILE).unlink(missing_ok=True)
    return path


def artifact_digest_of_version(tracking_uri: str, name: str, registry_version: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        return artifact_digest(download_version(tracking_uri, name, registry_version, Path(tmp)))


class ArtifactsMissing(CheckFailed):
    """A registry version whose artifacts are gone from the store or no longer hash to its record."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint
            or "nothing was moved; train and promote a new version (locally: `mlops local up --train`), or restore "
            "the bucket from a backup and run this again",
        )


def verified_download(tracking_uri: str, info: VersionInfo, destination: Path) -> Path:
    """Download a version's artifacts and check them against its `artifact_sha256` tag: a version whose
    artifacts are missing or changed is refused (ArtifactsMissing), never served, judged or copied."""
    what = f"{info.registered_model} version {info.registry_version} (model version {info.model_version})"
    expected = info.tags.get("artifact_sha256")
    if not expected:
        raise CheckFailed(f"{what} has no artifact_sha256 tag: its artifacts cannot be verified")
    try:
        path = download_version(tracking_uri, info.registered_model, info.registry_version, destination)
    except Exception as exc:
        if type(exc).__name__ in {"EndpointConnectionError", "ConnectTimeoutError"}:
            raise EnvironmentProblem(
                f"the object store holding {what}'s artifacts is not reachable ({exc})",
                hint="start it (`mlops local up`) or check the artifact store's address",
            ) from None
        if isinstance(exc, (BadInput, CheckFailed, EnvironmentProblem)) or "Connection refused" in str(exc):
            raise
        text = str(exc).strip() or type(exc).__name__
        location = re.search(r"from (\S+?):?(?:\s|$)", text)
        where = f" at {location.group(1)}" if location else ""
        if any(marker in text for marker in ("(404)", "NoSuchKey", "Not Found", "does not exist")):
            raise ArtifactsMissing(f"{what}: its artifacts are missing from the store{where}") from None
        raise ArtifactsMissing(f"{what}: its artifacts cannot be read{where} ({text.splitlines()[-1][:200]})") from None
    if not any(p.is_file() for p in path.rglob("*")):
        raise ArtifactsMissing(f"{what}: its artifacts are missing from the store (nothing under its location)")
    actual = artifact_digest(path)
    if actual != expected:
        raise ArtifactsMissing(
            f"{what}: its stored artifacts hash to {actual[:12]}…, not the recorded {expected[:12]}… "
            "(some are missing, corrupted or tampered with)"
        )
    return path


def verify_artifacts(tracking_uri: str, info: VersionInfo) -> None:
    """`verified_download` into a scratch directory: raises unless every artifact is there and intact."""
    with tempfile.TemporaryDirectory() as tmp:
        verified_download(tracking_uri, info, Path(tmp))


def has_signature(model_dir: Path) -> bool:
    mlmodel = model_dir / "MLmodel"
    return mlmodel.is_file() and bool((yaml.safe_load(mlmodel.read_text()) or {}).get("signature"))


def set_version_lineage(client: MlflowClient, name: str, registry_version: int, tags: Mapping[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(registry_version), key, value)


@contextmanager
def guarded(what: str, tracking_uri: str) -> Iterator[None]:
    """Turn an unreachable server into a clear environment problem (exit 3) that names the server."""
    try:
        yield
    except (BadInput, CheckFailed, EnvironmentProblem):
        raise
    except Exception as exc:
        markers = ("Max retries exceeded", "Connection refused", "ConnectionError", "API request to")
        if any(marker in str(exc) for marker in markers):
            raise EnvironmentProblem(
                f"the MLflow server at {tracking_uri} is not reachable while {what}",
                hint="start it (`mlops local up`) or check the tracking URI; the alias moves only after a verified "
                "copy, so re-running the same command converges",
            ) from None
        raise


def version_info(client: MlflowClient, name: str, registry_version: int) -> VersionInfo:
    version = client.get_model_version(name, str(registry_version))
    return _info(client, version)


def _info(client: MlflowClient, version: ModelVersion) -> VersionInfo:
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    if version.run_id:
        run = client.get_run(version.run_id)
        metrics, params = dict(run.data.metrics), dict(run.data.params)
    tags = dict(version.tags or {})
    return VersionInfo(
        registered_model=version.name,
        registry_version=int(version.version),
        model_version=int(tags.get("model_version", version.version)),
        tags=tags,
        metrics=metrics,
        params=params,
        run_id=version.run_id,
    )


def champion(client: MlflowClient, name: str) -> VersionInfo | None:
    """The version an environment serves (alias `champion`), or None before the first promotion."""
    return by_alias(client, name, CHAMPION)


def by_alias(client: MlflowClient, name: str, alias: str) -> VersionInfo | None:
    """The version `alias` names, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise
    return _info(client, version)


def champion_model_version(tracking_uri: str, name: str) -> int | None:
    """`champion(...).model_version` through MLflow's REST API, for status checks that must stay fast."""
    import httpx  # noqa: PLC0415

    response = httpx.get(
        f"{tracking_uri}/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": CHAMPION}, timeout=10
    )
    # No such registered model (404 / RESOURCE_DOES_NOT_EXIST), or a model without the alias yet (400, "not found").
    if response.status_code in {400, 404} and (
        "RESOURCE_DOES_NOT_EXIST" in response.text or "not found" in response.text.lower()
    ):
        return None
    response.raise_for_status()
    version = response.json()["model_version"]
    tags = {tag["key"]: tag["value"] for tag in version.get("tags", [])}
    return int(tags.get("model_version", version["version"]))


def find_by_model_version(client: MlflowClient, name: str, model_version: int) -> VersionInfo | None:
    """The registry version of `name` that carries `model_version` (the newest verified one)."""
    candidates = [
        v
        for v in client.search_model_versions(f"name='{name}'", max_results=1000)
        if (v.tags or {}).get("model_version", str(v.version)) == str(model_version)
        and (v.tags or {}).get("copy_status", "verified") == "verified"
    ]
    if not candidates:
        return None
    return _info(client, max(candidates, key=lambda v: int(v.version)))


def registered_model_exists(client: MlflowClient, name: str) -> bool:
    return bool(client.search_registered_models(f"name='{name}'", max_results=1))


def copy_version(
    *,
    source_uri: str,
    source: VersionInfo,
    target_uri: str,
    target_name: str,
    experiment: str,
    artifact_location: str | None,
    extra_tags: Mapping[str, str],
) -> VersionInfo:
    """Copy a version into another registry with its lineage; verify the digest on both ends.

    Idempotent: a verified copy of the same model version and digest is reused. A copy interrupted
    half-way stays tagged `copy_status=copying` and is never picked by `find_by_model_version`.
    """
    expected = source.tags.get("artifact_sha256", "")
    target = client_for(target_uri)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = verified_download(source_uri, source, Path(tmp) / "src")
        existing = find_by_model_version(target, target_name, source.model_version)
        if existing and existing.tags.get("artifact_sha256") == expected:
            try:  # reused only while its own artifacts are intact; else a fresh copy replaces it
                verify_artifacts(target_uri, existing)
                return existing
            except ArtifactsMissing:
                target.set_model_version_tag(target_name, str(existing.registry_version), "copy_status", "lost")
        experiment_id = _experiment_id(target, experiment, artifact_location)
        run = target.create_run(experiment_id, run_name=f"copy-{source.registered_model}-v{source.model_version}")
        run_id = run.info.run_id
        for metric, number in source.metrics.items():
            target.log_metric(run_id, metric, number)
        for param, text in source.params.items():
            target.log_param(run_id, param, text)
        target.log_artifacts(run_id, str(model_dir), "model")
        target.set_terminated(run_id)
        if not registered_model_exists(target, target_name):
            target.create_registered_model(target_name)
        lineage = {key: source.tags[key] for key in LINEAGE_TAGS if key in source.tags}
        tags = {
            **lineage,
            **extra_tags,
            "source_registered_model": source.registered_model,
            "source_registry_version": str(source.registry_version),
            "copy_status": "copying",
        }
        created = target.create_model_version(target_name, f"{run.info.artifact_uri}/model", run_id=run_id, tags=tags)
        copied = artifact_digest_of_version(target_uri, target_name, int(created.version))
        if copied != expected:
            target.delete_model_version(target_name, created.version)
            raise CheckFailed(
                f"the copy in {target_name} hashes to {copied[:12]}…, not {expected[:12]}…; it was removed"
            )
        target.set_model_version_tag(target_name, created.version, "copy_status", "verified")
        return version_info(target, target_name, int(created.version))


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(client.create_experiment(name, artifact_location=artifact_location))

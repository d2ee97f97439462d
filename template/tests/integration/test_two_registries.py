"""Cross-registry promotion between two separate MLflow servers (as in the cloud: one per environment)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import EnvironmentProblem
from core.registry import (
    CHAMPION,
    VersionInfo,
    artifact_digest_of_version,
    champion,
    client_for,
    copy_version,
    registered_name,
)
from pipelines.common.procs import LOOPBACK, Proc, choose_port
from pipelines.local.environment import LocalEnvironment, UpSummary
from tests.tracking_servers import tracking_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    with tracking_server(tmp_path_factory.mktemp("second-mlflow"), "second-tracking") as proc:
        yield proc


def test_copy_between_two_servers_keeps_lineage_and_digest(
    local_env: tuple[LocalEnvironment, UpSummary], second_server: Proc, tmp_path: Path
) -> None:
    env, _ = local_env
    source = champion(client_for(env.tracking_uri()), registered_name("prod", env.model))
    assert source is not None
    target_name = registered_name("prod", env.model)

    def copy() -> VersionInfo:
        return copy_version(
            source_uri=env.tracking_uri(),
            source=source,
            target_uri=second_server.url,
            target_name=target_name,
            experiment="registry-prod",
            artifact_location=str(tmp_path / "copies"),
            extra_tags={"promoted_from": "local"},
        )

    copied = copy()
    assert copied.tags["artifact_sha256"] == source.tags["artifact_sha256"]
    digest = artifact_digest_of_version(second_server.url, target_name, copied.registry_version)
    assert digest == source.tags["artifact_sha256"]
    for tag in ("model_version", "git_sha", "dataset_sha256", "training_config", "explanation"):
        assert copied.tags[tag] == source.tags[tag]
    assert copied.tags["source_registered_model"] == source.registered_model
    assert copied.metrics == source.metrics
    assert copy().registry_version == copied.registry_version, "copying again reuses the verified copy"
    client_for(second_server.url).set_registered_model_alias(target_name, CHAMPION, str(copied.registry_version))
    served = champion(client_for(second_server.url), target_name)
    assert served is not None and served.model_version == source.model_version


def test_unreachable_target_is_an_environment_problem(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    from pipelines.promotion.registries import Registries, promote

    env, _ = local_env
    dead = f"http://{LOOPBACK}:{choose_port(0, 'dead')}"
    registries = Registries(
        tracking_uris={"dev": env.tracking_uri(), "staging": dead, "prod": dead}, artifact_locations={}
    )
    serving_in_dev = champion(client_for(env.tracking_uri()), registered_name("dev", env.model))
    assert serving_in_dev is not None
    with pytest.raises(EnvironmentProblem, match=f"MLflow server at {dead} is not reachable"):
        promote(env.model, serving_in_dev.model_version, "staging", registries)

"""`mlops local up` for real: the lifecycle, idempotence, bad requests and faults, with real servers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from core.errors import BadInput, CheckFailed, EnvironmentProblem
from core.registry import champion, client_for, find_by_model_version, registered_name
from pipelines.local.environment import LocalEnvironment, UpSummary
from pipelines.local.objectstore import s3_client
from pipelines.promotion.registries import PromotionRefused, promote

pytestmark = pytest.mark.integration


def registry_state(env: LocalEnvironment) -> dict[str, object]:
    """Everything a failed request must leave unchanged: aliases and the number of versions per registry."""
    client = client_for(env.tracking_uri())
    state: dict[str, object] = {}
    for environment in ("dev", "staging", "prod"):
        name = registered_name(environment, env.model)
        state[f"{environment}.champion"] = getattr(champion(client, name), "registry_version", None)
        state[f"{environment}.versions"] = len(client.search_model_versions(f"name='{name}'"))
    return state


def test_up_runs_the_whole_lifecycle(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    _, summary = local_env
    assert summary.trained_version == 1
    assert summary.champions == {"dev": 1, "staging": 1, "prod": 1}
    assert [p["environment"] for p in summary.promotions] == ["dev", "staging", "prod"]
    assert all(p["passed"] for p in summary.promotions)
    assert summary.served_version == 1
    assert summary.smoke and all(ok for _, ok, _ in summary.smoke), summary.smoke


def test_every_server_has_its_own_process_group_and_state_files(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, _ = local_env
    running = env.running()
    assert sorted(running) == ["object_store", "serving", "tracking"]
    for name, proc in running.items():
        assert os.getpgid(proc.pid) == proc.pid, f"{name} leads its own process group"
        assert Path(proc.log).is_file() and proc.url.startswith("http://127.0.0.1:")
    assert env.state_file.is_file() and (env.home / "mlflow.db").is_file()


def test_lineage_and_decisions_are_recorded(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, summary = local_env
    client = client_for(env.tracking_uri())
    # The version the first `up` trained and promoted, not whatever prod serves now: other tests of this
    # session (tests run in random order) promote versions of their own, trained without a dataset.
    assert summary.trained_version is not None
    prod = find_by_model_version(client, registered_name("prod", env.model), summary.trained_version)
    assert prod is not None
    for tag in ("model_version", "git_sha", "dataset_sha256", "training_config", "artifact_sha256", "explanation"):
        assert prod.tags.get(tag), tag  # copied with the version from dev's registry through staging's
    assert (prod.tags["dataset_name"], prod.tags["features_dataset"]) == (env.model, f"{env.model}-features@1")
    assert prod.tags["feature_code"] == f"apps.training.features.{env.model}" and prod.tags["training_run_id"]
    assert prod.tags["promoted_from"] == "staging" and prod.tags["copy_status"] == "verified"
    assert prod.tags["gate.prod.passed"] == "true"
    assert prod.metrics["roc_auc"] > 0.9, "metrics travel with the copy"
    dev = find_by_model_version(client, registered_name("dev", env.model), 1)
    assert dev is not None and dev.tags["gate.dev.passed"] == dev.tags["gate.staging.passed"] == "true"


def test_second_up_reuses_everything(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, _ = local_env
    before, champions = env.running(), env.champions()
    again = env.up()
    assert sorted(again.reused) == ["object_store", "serving", "tracking"]
    assert again.trained_version is None, "no training unless asked"
    assert {n: p.pid for n, p in again.services.items()} == {n: p.pid for n, p in before.items()}
    assert again.champions == champions and again.served_version == champions["prod"]


@pytest.mark.parametrize(
    ("model", "version", "target", "error", "message"),
    [
        ("no-such-model", 1, "dev", BadInput, "unknown model 'no-such-model'"),
        (None, 99, "staging", BadInput, "version 99 is not in the dev registry"),
        (None, 99, "dev", BadInput, "train it first"),
        (None, 1, "qa", BadInput, "cannot promote to .qa.: it is not one of the environments models go through"),
        (None, 0, "dev", BadInput, "positive model version"),
    ],
)
def test_bad_promotion_requests_change_nothing(
    local_env: tuple[LocalEnvironment, UpSummary],
    model: str | None,
    version: int,
    target: str,
    error: type[Exception],
    message: str,
) -> None:
    env, _ = local_env
    before = registry_state(env)
    with pytest.raises(error, match=message):
        promote(model or env.model, version, target, env.registries())
    assert registry_state(env) == before


def test_new_version_cannot_skip_staging(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    from apps.training.train import TrainingConfig, train

    env, _ = local_env
    new = train(env.tracking_uri(), registered_name("dev", env.model), TrainingConfig(random_state=7))
    promote(env.model, new.version, "dev", env.registries())
    before = registry_state(env)
    with pytest.raises(BadInput, match="may not skip an environment; promote it to staging first") as skipped:
        promote(env.model, new.version, "prod", env.registries())
    assert skipped.value.exit_code == 2
    assert registry_state(env) == before, "prod keeps serving its version"


def test_version_not_serving_in_the_source_is_refused_by_the_order_rule(
    local_env: tuple[LocalEnvironment, UpSummary],
) -> None:
    """Version 1 is in staging's registry but staging now serves a newer one: prod may only take that one."""
    from apps.training.train import train

    env, _ = local_env
    newer = train(env.tracking_uri(), registered_name("dev", env.model))
    for target in ("dev", "staging"):
        promote(env.model, newer.version, target, env.registries())
    before = registry_state(env)
    with pytest.raises(PromotionRefused, match=f"order: staging serves version {newer.version}") as refused:
        promote(env.model, 1, "prod", env.registries())
    assert refused.value.exit_code == 1
    assert registry_state(env) == before


def test_failing_metric_floor_is_refused(local_env: tuple[LocalEnvironment, UpSummary], tmp_path: Path) -> None:
    from apps.training.train import train

    env, _ = local_env
    strict = Path(__file__).parents[2] / "policies" / "models" / "staging.yaml"
    (tmp_path / "staging.yaml").write_text(strict.read_text().replace("roc_auc: 0.95", "roc_auc: 0.9999"))
    new = train(env.tracking_uri(), registered_name("dev", env.model))
    promote(env.model, new.version, "dev", env.registries())
    dev_serving = champion(client_for(env.tracking_uri()), registered_name("dev", env.model))
    assert dev_serving is not None and dev_serving.model_version == new.version
    before = registry_state(env)
    with pytest.raises(PromotionRefused, match=r"min_roc_auc: roc_auc = 0\.\d+, floor 0\.9999"):
        promote(env.model, dev_serving.model_version, "staging", env.registries(), policy_dir=tmp_path)
    assert registry_state(env) == before
    tags = (
        client_for(env.tracking_uri())
        .get_model_version(dev_serving.registered_model, str(dev_serving.registry_version))
        .tags
    )
    assert tags["gate.staging.passed"] == "false", "the refusal is recorded on the version"


def test_version_missing_lineage_is_refused(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    from apps.training.train import train

    env, _ = local_env
    client = client_for(env.tracking_uri())
    new = train(env.tracking_uri(), registered_name("dev", env.model))
    client.delete_model_version_tag(new.registered_model, str(new.version), "dataset_sha256")
    before = registry_state(env)
    with pytest.raises(PromotionRefused, match="lineage_tags: missing: dataset_sha256"):
        promote(env.model, new.version, "dev", env.registries())
    assert registry_state(env) == before


def test_tampered_artifact_is_detected(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    from apps.training.train import train

    env, _ = local_env
    client = client_for(env.tracking_uri())
    new = train(env.tracking_uri(), registered_name("dev", env.model))
    promote(env.model, new.version, "dev", env.registries())
    source = client.get_model_version(new.registered_model, str(new.version)).source
    logged_model = client.get_logged_model(source.removeprefix("models:/"))
    bucket, _, prefix = logged_model.artifact_location.removeprefix("s3://").partition("/")
    s3 = s3_client(env.running()["object_store"].port)
    key = next(
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"] if o["Key"].endswith(".skops")
    )
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=b"not the trained weights")
    try:
        before = registry_state(env)
        with pytest.raises(CheckFailed, match=r"its stored artifacts hash to .*, not the recorded .*tampered"):
            promote(env.model, new.version, "staging", env.registries())
        assert registry_state(env) == before
    finally:  # dev serves this version: the other tests (and `up`) need its artifacts intact
        s3.put_object(Bucket=bucket, Key=key, Body=original)


def test_interrupted_copy_converges_on_rerun(
    local_env: tuple[LocalEnvironment, UpSummary], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server dies after a copy is created but before it is verified: no alias moves; a re-run converges."""
    import core.registry as registry
    from apps.training.train import train

    env, _ = local_env
    new = train(env.tracking_uri(), registered_name("dev", env.model))
    promote(env.model, new.version, "dev", env.registries())
    real = registry.artifact_digest_of_version

    def dies(*_: object) -> str:
        raise ConnectionError("Connection refused (simulated: the server died mid-copy)")

    monkeypatch.setattr(registry, "artifact_digest_of_version", dies)
    staging = registered_name("staging", env.model)
    before = champion(client_for(env.tracking_uri()), staging)
    with pytest.raises(EnvironmentProblem, match="not reachable while copying"):
        promote(env.model, new.version, "staging", env.registries())
    after = champion(client_for(env.tracking_uri()), staging)
    assert after is not None and before is not None and after.registry_version == before.registry_version
    assert find_by_model_version(client_for(env.tracking_uri()), staging, new.version) is None, "half copy never used"
    monkeypatch.setattr(registry, "artifact_digest_of_version", real)
    done = promote(env.model, new.version, "staging", env.registries())
    assert done.target.model_version == new.version and done.target.tags["copy_status"] == "verified"


def test_tracking_server_killed_then_up_converges(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    from pipelines.common.procs import stop

    env, _ = local_env
    registries, champions = env.registries(), env.champions()
    tracking = env.state()["tracking"]
    assert stop(tracking)
    started = time.monotonic()
    with pytest.raises(EnvironmentProblem, match="is not reachable"):
        promote(env.model, 1, "dev", registries)
    assert time.monotonic() - started < 60, "a dead server fails the command quickly"
    summary = env.up()
    assert "tracking" not in summary.reused and "object_store" in summary.reused
    assert summary.champions == champions and all(ok for _, ok, _ in summary.smoke)


def test_retrain_flows_to_serving(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    env, _ = local_env
    summary = env.up(train=True)
    assert summary.refused is None, summary.refused
    assert summary.trained_version is not None and summary.trained_version > 1
    assert summary.champions["prod"] == summary.served_version == summary.trained_version
    prod = next(p for p in summary.promotions if p["environment"] == "prod")
    shadow = {r["rule"]: r for r in prod["rules"] if r["rule"].startswith("shadow")}
    # prod served a version: the new one was its shadow first, on replayed held-out rows
    assert shadow["shadow_requests"]["passed"] and shadow["shadow_agreement"]["passed"], shadow


def test_down_keeps_data_and_up_restores_it(local_env: tuple[LocalEnvironment, UpSummary]) -> None:
    """`down` without --purge keeps the registry and the artifacts (the store writes them to disk)."""
    env, _ = local_env
    before = env.champions()
    assert sorted(env.down()) == ["object_store", "serving", "tracking"]
    assert env.status() == [] and (env.home / "store").is_dir() and (env.home / "mlflow.db").is_file()
    again = env.up()
    assert again.reused == [] and again.trained_version is None, "nothing is retrained"
    assert again.champions == before and again.served_version == before["prod"]
    assert all(ok for _, ok, _ in again.smoke), again.smoke


@pytest.mark.parametrize("sent", [b"", b"POST /predict HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half a head"])
def test_a_connection_without_a_whole_request_head_is_closed(
    local_env: tuple[LocalEnvironment, UpSummary], sent: bytes
) -> None:
    """uvicorn alone keeps such a connection open forever (apps/serving/connections.py)."""
    import socket

    serving = local_env[0].running()["serving"]
    with socket.create_connection(("127.0.0.1", serving.port), timeout=30) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        assert sock.recv(100) == b"", "closed without an answer"
        assert 5 <= time.monotonic() - started <= 20, "after the head deadline (10 s), not at once"
    assert httpx.post(serving.url + "/model", json={}, timeout=10).status_code == 200, "others are served"

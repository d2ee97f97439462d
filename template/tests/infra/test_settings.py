"""The stack files: the defaults are valid, secure and cheap; a bad file is refused with file + key path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.config import SettingsError, list_stacks, load_stack, project_name, settings_from_config
from infra.settings import PROMOTION_ORDER, Environment, Settings
from tests.conftest import ROOT

PROJECT = project_name(ROOT)
DIGEST = "sha256:" + "ab" * 32


def edit_stack(root: Path, stack: str, mutate: Callable[[dict[str, Any]], None]) -> Path:
    """Change one stack file in place through a round trip (comments kept), as a user would."""
    path = root / "stacks" / f"Pulumi.{stack}.yaml"
    yaml = YAML(typ="rt")
    document = yaml.load(path.read_text())
    mutate(document["config"])
    with path.open("w") as handle:
        yaml.dump(document, handle)
    return path


def first_cloud(config: dict[str, Any]) -> str:
    return str(config[f"{PROJECT}:clouds"][0])


def test_every_environment_has_a_stack_file() -> None:
    assert list_stacks(ROOT) == ["local", "dev", "staging", "prod"]


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_default_stack_loads_and_matches_its_name(stack: str) -> None:
    settings = load_stack(ROOT, stack)
    assert settings.environment.value == stack
    assert settings.serving.model.version is None, "a new repository serves nothing until a promotion"


@pytest.mark.parametrize("stack", [e.value for e in PROMOTION_ORDER])
def test_default_cloud_stacks_are_secure_and_cheap(stack: str) -> None:
    settings = load_stack(ROOT, stack)
    assert settings.clouds, "dev/staging/prod run in a cloud"
    assert settings.budget is not None and settings.budget.monthly_usd > 0
    assert settings.storage.customer_managed_key and not settings.storage.force_destroy
    for cluster in settings.clusters.values():
        assert cluster.endpoint_public_access_cidrs == [], "API endpoints are private by default"
        assert cluster.spot_pool.spot and cluster.spot_pool.min_nodes == 0, "batch pool is spot and scales to zero"
        assert not cluster.system_pool.spot


def test_budgets_grow_towards_prod() -> None:
    budgets = [load_stack(ROOT, e.value).budget for e in PROMOTION_ORDER]
    amounts = [b.monthly_usd for b in budgets if b is not None]
    assert amounts == sorted(amounts) and len(amounts) == 3


def test_local_stack_targets_an_existing_cluster() -> None:
    settings = load_stack(ROOT, "local")
    assert settings.environment is Environment.LOCAL
    assert settings.clouds == [] and settings.local_cluster is not None


def test_pulumi_route_and_file_route_agree() -> None:
    """`settings_from_config` is what both loaders call; a flat Pulumi mapping gives the same result."""
    document = YAML(typ="safe").load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    assert settings_from_config(document["config"], PROJECT, "x") == load_stack(ROOT, "dev")


def test_settings_are_frozen() -> None:
    settings = load_stack(ROOT, "dev")
    with pytest.raises(ValueError, match="frozen"):
        settings.serving.model.version = 3  # type: ignore[misc]


BAD_FILES: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    "a shadow of the served version": (
        lambda c: c[f"{PROJECT}:serving"].update(model={"name": "m", "version": 3}, shadow={"version": 3}),
        f"{PROJECT}:serving",
        "shadow.version: 3 is the served version",
    ),
    "a shadow with nothing served": (
        lambda c: c[f"{PROJECT}:serving"].update(shadow={"version": 3}),
        f"{PROJECT}:serving",
        "nothing is served yet",
    ),
    "a shadow sample over 100 %": (
        lambda c: c[f"{PROJECT}:serving"].update(
            model={"name": "m", "version": 3}, shadow={"version": 4, "sample_pct": 150}
        ),
        f"{PROJECT}:serving.shadow.sample_pct",
        "less than or equal to 100",
    ),
    "canary weights that fall": (
        lambda c: c[f"{PROJECT}:serving"].update(canary={"steps": [{"weight": 50}, {"weight": 20}]}),
        f"{PROJECT}:serving.canary",
        "weights must rise step by step (got [50, 20])",
    ),
    "a canary step of 100 %": (
        lambda c: c[f"{PROJECT}:serving"].update(canary={"steps": [{"weight": 100}]}),
        f"{PROJECT}:serving.canary.steps.0.weight",
        "less than or equal to 99",
    ),
    "a canary without Prometheus": (
        lambda c: c[f"{PROJECT}:monitoring"].update(enabled=False),
        f"{PROJECT}:(settings)",
        "serving.canary: its analysis reads Prometheus",
    ),
    "unknown key": (
        lambda c: c[f"{PROJECT}:serving"].update(replica=3),
        f"{PROJECT}:serving.replica",
        "unknown key; allowed here: model",
    ),
    "wrong type": (
        lambda c: c[f"{PROJECT}:serving"].update(min_replicas="two"),
        f"{PROJECT}:serving.min_replicas",
        "must be a whole number, written without quotes (got 'two')",
    ),
    "model version as a string": (
        lambda c: c[f"{PROJECT}:serving"]["model"].update(version="3"),
        f"{PROJECT}:serving.model.version",
        "must be a whole number, written without quotes (got '3')",
    ),
    "model version as a boolean": (
        lambda c: c[f"{PROJECT}:serving"]["model"].update(version=True),
        f"{PROJECT}:serving.model.version",
        "must be a whole number, written without quotes (got True)",
    ),
    "a count as a fraction": (
        lambda c: c[f"{PROJECT}:serving"].update(max_replicas=2.5),
        f"{PROJECT}:serving.max_replicas",
        "must be a whole number (got 2.5)",
    ),
    "a threshold list with a string": (
        lambda c: c[f"{PROJECT}:budget"].update(actual_thresholds_pct=[50, "80"]),
        f"{PROJECT}:budget.actual_thresholds_pct",
        "got '80'",
    ),
    "an AWS profile": (lambda c: c.update({"aws:profile": "admin"}), "aws:profile", "credentials are not allowed"),
    "a shared credentials file": (
        lambda c: c.update({"aws:sharedCredentialsFiles": ["~/.aws/credentials"]}),
        "aws:sharedCredentialsFiles",
        "credential files stay on people's machines",
    ),
    "a kubeconfig": (
        lambda c: c.update({"kubernetes:kubeconfig": "apiVersion: v1"}),
        "kubernetes:kubeconfig",
        "credentials are not allowed",
    ),
    "a provider token under another name": (
        lambda c: c.update({"gcp:oauthAccessTokenX": "ya29"}),
        "gcp:oauthAccessTokenX",
        "credentials are not allowed",
    ),
    "missing model version": (
        lambda c: c[f"{PROJECT}:serving"]["model"].pop("version"),
        f"{PROJECT}:serving.model.version",
        "required key is missing",
    ),
    "more serving workers than cores": (
        lambda c: c[f"{PROJECT}:serving"].update(workers=4, cpu="500m"),
        f"{PROJECT}:serving",
        "workers (4) exceeds the 1 cores the container may use",
    ),
    "cpu given as memory": (
        lambda c: c[f"{PROJECT}:serving"].update(cpu="2Gi"),
        f"{PROJECT}:serving",
        "is a memory quantity",
    ),
    "unknown cloud": (
        lambda c: c.update({f"{PROJECT}:clouds": ["azure"]}),
        f"{PROJECT}:clouds.0",
        "'aws' or 'gcp'",
    ),
    "open endpoint": (
        lambda c: c[f"{PROJECT}:{first_cloud(c)}"]["cluster"].update(endpoint_public_access_cidrs=["0.0.0.0/0"]),
        ".cluster",
        "must not contain 0.0.0.0/0",
    ),
    "static credentials": (
        lambda c: c.update({"aws:secretKey": "abc"}),
        "aws:secretKey",
        "credentials are not allowed",
    ),
    "unknown project key": (
        lambda c: c.update({f"{PROJECT}:budgets": {"monthly_usd": 1}}),
        f"{PROJECT}:budgets",
        "unknown key",
    ),
    "pool sizes out of order": (
        lambda c: c[f"{PROJECT}:{first_cloud(c)}"]["cluster"]["spot_pool"].update(min_nodes=5, max_nodes=2),
        ".cluster.spot_pool",
        "min_nodes <= desired_nodes <= max_nodes",
    ),
    "negative budget": (
        lambda c: c[f"{PROJECT}:budget"].update(monthly_usd=-5),
        f"{PROJECT}:budget.monthly_usd",
        "greater than 0",
    ),
    "environment does not match the stack": (
        lambda c: c.update({f"{PROJECT}:environment": "prod"}),
        f"{PROJECT}:environment",
        "the stack is 'dev'",
    ),
    "image with the latest tag": (
        lambda c: c[f"{PROJECT}:images"].update(
            serving={"reference": "ghcr.io/acme/serving:latest"}, tracking={"digest": DIGEST}
        ),
        f"{PROJECT}:images.serving.reference",
        "the `latest` tag is not allowed",
    ),
    "image without a tag": (
        lambda c: c[f"{PROJECT}:images"].update(
            serving={"digest": DIGEST}, tracking={"reference": "ghcr.io/acme/tracking"}
        ),
        f"{PROJECT}:images.tracking.reference",
        "must be registry/repository:tag",
    ),
    "image digest not sha256": (
        lambda c: c[f"{PROJECT}:images"].update(serving={"digest": "sha256:abc"}, tracking={"digest": DIGEST}),
        f"{PROJECT}:images.serving.digest",
        "should match pattern",
    ),
    "image with digest and reference": (
        lambda c: c[f"{PROJECT}:images"].update(
            serving={"digest": DIGEST, "reference": f"ghcr.io/acme/serving@{DIGEST}"}, tracking={"digest": DIGEST}
        ),
        f"{PROJECT}:images.serving",
        "exactly one of digest",
    ),
    "only one image pinned": (
        lambda c: c[f"{PROJECT}:images"].update(serving={"digest": DIGEST}),
        f"{PROJECT}:images",
        "pin both serving and tracking",
    ),
    "repository not owner/name": (
        lambda c: c[f"{PROJECT}:github"].update(repository="acme"),
        f"{PROJECT}:github.repository",
        "must be owner/name",
    ),
    "cloud stack without a deploy repository": (
        lambda c: c.pop(f"{PROJECT}:github"),
        "",
        "needs a github section",
    ),
    "person who is not a principal": (
        lambda c: c.update({f"{PROJECT}:access": {"ml_engineers": ["bob"]}}),
        f"{PROJECT}:access.ml_engineers.0",
        "must be an AWS IAM role/user ARN",
    ),
    "cloud listed without its section": (
        lambda c: c.pop(f"{PROJECT}:{first_cloud(c)}"),
        ".cluster",
        "required key is missing",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_stack_file_names_file_and_key_path(repo_copy: Path, case: str) -> None:
    mutate, key, expected = BAD_FILES[case]
    path = edit_stack(repo_copy, "dev", mutate)
    before = path.read_bytes()
    with pytest.raises(SettingsError) as raised:
        load_stack(repo_copy, "dev")
    message = str(raised.value)
    assert message.startswith("stacks/Pulumi.dev.yaml is invalid:"), message
    assert key in message and expected in message, message
    assert path.read_bytes() == before, "loading never rewrites the file"


def test_a_stack_file_over_the_size_limit_is_refused_before_it_is_parsed(repo_copy: Path) -> None:
    from infra.config import MAX_STACK_FILE_BYTES

    path = repo_copy / "stacks" / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "#" * MAX_STACK_FILE_BYTES + "\n")
    with pytest.raises(SettingsError, match=r"a stack file may hold at most 1,000,000"):
        load_stack(repo_copy, "dev")


def test_problem_points_at_the_line(repo_copy: Path) -> None:
    edit_stack(repo_copy, "dev", lambda c: c[f"{PROJECT}:serving"].update(min_replicas="two"))
    lines = (repo_copy / "stacks" / "Pulumi.dev.yaml").read_text().splitlines()
    with pytest.raises(SettingsError) as raised:
        load_stack(repo_copy, "dev")
    (problem,) = raised.value.problems
    assert problem.line is not None and "min_replicas: two" in lines[problem.line - 1]


def test_invalid_yaml_reports_position(repo_copy: Path) -> None:
    path = repo_copy / "stacks" / "Pulumi.dev.yaml"
    path.write_text(path.read_text() + "  broken: [unclosed\n")
    with pytest.raises(SettingsError, match=r"not valid YAML at line \d+"):
        load_stack(repo_copy, "dev")


def test_missing_stack_file_lists_known_stacks(repo_copy: Path) -> None:
    with pytest.raises(SettingsError, match="stacks with a file: local, dev, staging, prod"):
        load_stack(repo_copy, "qa")


def test_schema_rejects_local_with_cloud() -> None:
    raw = load_stack(ROOT, "local").model_dump(mode="json")
    raw["clouds"] = ["aws"]
    with pytest.raises(ValueError, match="existing cluster"):
        Settings.model_validate(raw)


@pytest.mark.parametrize("project", ["google-proj", "my-ssl-app", "null-project"])
def test_gcp_project_ids_with_reserved_words_are_refused(project: str) -> None:
    from infra.settings.platform import _project_id_allowed

    with pytest.raises(ValueError, match="GCP reserves"):
        _project_id_allowed(project)
    assert _project_id_allowed("acme-ml-prod") == "acme-ml-prod"

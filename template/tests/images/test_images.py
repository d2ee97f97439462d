"""The apps' images as data (no container engine here: the Dockerfiles are parsed, not built) and
`mlops images`: push names, the pin edit, status and the pin pull request (real git, a bare remote)."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from core.errors import BadInput
from infra.config import list_stacks, load_stack, project_name
from infra.k8s import apps, serving
from infra.k8s.objects import MINIO_CLIENT_IMAGE, MINIO_IMAGE, POSTGRES_IMAGE
from infra.naming import IMAGES
from infra.settings import ImagePin, MonitoringSettings, ServingSettings
from pipelines.cli import main
from pipelines.common.git import Git
from pipelines.containers.contexts import DOCKERFILES, context_id, copied_paths, parse_dockerfile
from pipelines.images.pins import images_block, pins_in, request_pin, set_images
from pipelines.images.status import next_steps, status
from pipelines.images.targets import push_targets
from policies.infra.rules.images import THIRD_PARTY_REPOSITORIES, repository_of
from tests.conftest import ROOT, git, git_repository

PROJECT = project_name(ROOT)
CLOUD_STACKS = [s for s in list_stacks(ROOT) if s != "local"]
PINNED_BASE = re.compile(r"^[a-z0-9./-]+(:[A-Za-z0-9._-]+)?@sha256:[0-9a-f]{64}$")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "cmake", "clang", "git", "curl", "wget")
SECRET_PATTERN = re.compile(r"(^|/)(\.env|.*\.pem|.*\.key|id_rsa|credentials.*|\.git|\.aws|\.config)$")
ROLE = "arn:aws:iam::111122223333:role/x-dev-deploy"


def digest(seed: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


# --- the image definitions, as data ---------------------------------------------------------------


def stages(image: str) -> list[list[dict[str, Any]]]:
    parser = parse_dockerfile((ROOT / DOCKERFILES[image]).read_text())
    found: list[list[dict[str, Any]]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def final_env(image: str) -> dict[str, str]:
    parser = parse_dockerfile((ROOT / DOCKERFILES[image]).read_text())
    return dict(parser.envs)


def global_args(image: str) -> dict[str, str]:
    """The ARGs declared before the first FROM, with their defaults (what `FROM ${ARG}` resolves to)."""
    text = (ROOT / DOCKERFILES[image]).read_text()
    head = text[: text.index("\nFROM ")]
    return dict(re.findall(r"^ARG ([A-Z_]+)=(\S+)$", head, flags=re.M))


@pytest.mark.parametrize("image", IMAGES)
def test_every_base_is_pinned_by_digest(image: str) -> None:
    """Literal FROM lines pinned by digest (Dependabot reads only those); `${BASE}` and `${UV_IMAGE}`
    default to those stages, and `mlops images build` overrides them only with locally made bases."""
    names = []
    arguments = global_args(image)
    assert set(arguments) == {"BASE", "UV_IMAGE"}, arguments
    for stage in stages(image):
        words = stage[0]["value"].split()
        base = re.sub(r"^\$\{(\w+)\}$", lambda m: arguments[m.group(1)], words[0])
        names.append(words[2] if len(words) == 3 and words[1].upper() == "AS" else None)
        assert base in names or PINNED_BASE.match(base), f"{DOCKERFILES[image]}: FROM {base} is not pinned by digest"
    assert len(stages(image)) >= 4, "the two pinned bases, a build stage and a final stage"
    base_stage = next(s for s in stages(image) if s[0]["value"].endswith(" AS " + arguments["BASE"]))
    assert base_stage[0]["value"].startswith("python:"), "BASE defaults to the public Python image"


@pytest.mark.parametrize("image", IMAGES)
def test_the_final_stage_is_lean_non_root_and_healthchecked(image: str) -> None:
    final = stages(image)[-1]
    kinds = [i["instruction"] for i in final]
    users = [i["value"].split(":")[0] for i in final if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0"), "the last USER must not be root"
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN"), "nothing runs as root after USER"
    assert "HEALTHCHECK" in kinds and "CMD" in kinds
    for instruction in final:
        value = instruction["value"]
        if instruction["instruction"] == "RUN":
            assert not any(re.search(rf"\b{re.escape(tool)}\b", value) for tool in BUILD_TOOLS), value
            assert "apt-get install" not in value and "pip install" not in value, value
        if instruction["instruction"] == "COPY":
            assert value.startswith("--from=build "), f"the final stage copies only the built environment: {value}"
    assert not any("/uv " in i["value"] for i in final if i["instruction"] == "COPY"), "uv stays in the build stage"


@pytest.mark.parametrize("image", IMAGES)
def test_dependencies_come_from_the_lock_and_no_secret_is_copied(image: str) -> None:
    text = (ROOT / DOCKERFILES[image]).read_text()
    syncs = re.findall(r"uv sync[^\n]*", text)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs), syncs
    paths = copied_paths(text)
    assert {"pyproject.toml", "uv.lock"} <= set(paths)
    for path in paths:
        assert not SECRET_PATTERN.search(path), f"{DOCKERFILES[image]} copies {path}"
        assert (ROOT / path).exists(), f"{DOCKERFILES[image]} copies {path}, which does not exist"
    for key in final_env(image):
        assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", key), f"{key} would bake a secret into the image"


def test_dockerignore_lets_in_exactly_what_the_images_copy() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded unless let in"
    let_in = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = {path for image in IMAGES for path in copied_paths((ROOT / DOCKERFILES[image]).read_text())}
    excluded = {path for path in copied if not {path, *map(str, PurePosixPath(path).parents)} & let_in}
    assert not excluded, f"copied but excluded from the build context: {excluded}"
    assert not any(SECRET_PATTERN.search(path) for path in let_in)


def test_parsing_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert copied_paths((ROOT / DOCKERFILES["serving"]).read_text())
    assert list(tmp_path.iterdir()) == []


def test_copied_paths_reads_copy_forms() -> None:
    text = (
        "FROM a@sha256:" + "0" * 64 + " AS b\nCOPY --from=b /x /y\nCOPY ./apps/ pyproject.toml /src/\n"
        'COPY ["uv.lock", "/src/"]\nADD --chown=1:1 infra /src/infra\n'
    )
    assert copied_paths(text) == ["apps", "pyproject.toml", "uv.lock", "infra"]


def test_the_serving_image_runs_like_the_deployment() -> None:
    """Same variables (and values), same port and health path, same app as locally."""
    env = final_env("serving")
    (deployment,) = [
        o
        for o in serving.serving_objects(
            apps.AppContext("ns", "dev", {"project": "p"}, "s3://b/mlflow"),
            ServingSettings.model_validate({"model": {"name": "m", "version": 1}}),
            "image",
            tracking_auth=False,
            monitoring=MonitoringSettings(),
        )
        if o["kind"] == "Rollout"
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    deployed = {e["name"]: e.get("value") for e in container["env"]}
    for key, value in env.items():
        if key not in ("PATH", "PYTHONUNBUFFERED"):
            assert deployed.get(key) == value, f"the image sets {key}={value}, the Deployment {deployed.get(key)}"
    final = stages("serving")[-1]
    expose = [i["value"] for i in final if i["instruction"] == "EXPOSE"]
    assert expose == [str(apps.SERVING_PORT)]
    health = next(i["value"] for i in final if i["instruction"] == "HEALTHCHECK")
    assert f":{apps.SERVING_PORT}{container['livenessProbe']['httpGet']['path']}" in health
    command = next(i["value"] for i in final if i["instruction"] == "CMD")
    assert "apps.serving.service:ModelService" in command
    assert re.search(r"^class ModelService\b", (ROOT / "apps/serving/service.py").read_text(), flags=re.M)


def test_the_tracking_image_serves_mlflow_on_the_deployment_port() -> None:
    final = stages("tracking")[-1]
    assert [i["value"] for i in final if i["instruction"] == "EXPOSE"] == [str(apps.TRACKING_PORT)]
    health = next(i["value"] for i in final if i["instruction"] == "HEALTHCHECK")
    assert f":{apps.TRACKING_PORT}/health" in health
    for key, value in final_env("tracking").items():
        if key.startswith("MLFLOW_"):
            assert value in ("false", "true"), f"{key}: only switches belong in the image"


def test_third_party_images_are_pinned_and_allowed_by_the_policy() -> None:
    for image in (POSTGRES_IMAGE, MINIO_IMAGE, MINIO_CLIENT_IMAGE):
        assert PINNED_BASE.match(image), image
        assert repository_of(image) in THIRD_PARTY_REPOSITORIES, image


# --- push names, the pin edit ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_push_targets_are_the_stack_registries(stack: str) -> None:
    settings = load_stack(ROOT, stack)
    targets = push_targets(ROOT, stack, tag="run-1-1", aws_role_arn=ROLE if settings.aws else None)
    for image in IMAGES:
        names = targets[image]
        assert len(names) == len(settings.clouds)
        if settings.aws:
            assert (
                f"111122223333.dkr.ecr.{settings.aws.region}.amazonaws.com/{PROJECT}-{stack}/{image}:run-1-1" in names
            )
        if settings.gcp:
            path = f"{settings.gcp.region}-docker.pkg.dev/{settings.gcp.project}/{PROJECT}-{stack}-apps/{image}:run-1-1"
            assert path in names


def test_push_targets_refuse_bad_input() -> None:
    stack = CLOUD_STACKS[0]
    aws = load_stack(ROOT, stack).aws is not None
    with pytest.raises(BadInput, match="latest"):
        push_targets(ROOT, stack, tag="latest", aws_role_arn=ROLE)
    with pytest.raises(BadInput, match="--tag"):
        push_targets(ROOT, stack, tag="a/b", aws_role_arn=ROLE)
    with pytest.raises(BadInput, match="--aws-role-arn"):
        push_targets(ROOT, stack, tag="t", aws_role_arn="arn:aws:iam::12:user/x" if aws else ROLE)
    with pytest.raises(BadInput, match="local stack has no registry"):
        push_targets(ROOT, "local", tag="t", aws_role_arn=None)


def test_targets_command_writes_step_outputs(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stack = CLOUD_STACKS[0]
    settings = load_stack(ROOT, stack)
    out = tmp_path / "github_output"
    argv = ["images", "targets", "--env", stack, "--tag", "run-7-1", "--github-output", str(out)]
    assert main([*argv, *(["--aws-role-arn", ROLE] if settings.aws else [])]) == 0
    text = out.read_text()
    outputs = dict(re.findall(r"^(\w+)<<MLOPS_EOF\n(.*?)\nMLOPS_EOF$", text, flags=re.M | re.S))
    assert set(outputs) == {"serving", "tracking", "ecr_host", "gar_host", "gar_attestor", "gar_attestor_key", "commit"}
    assert outputs["commit"] == git(repo, "rev-parse", "HEAD")
    assert all(name.endswith(":run-7-1") for name in outputs["serving"].splitlines())
    assert bool(outputs["ecr_host"]) == (settings.aws is not None)
    assert bool(outputs["gar_host"]) == (settings.gcp is not None)
    if settings.gcp is not None:
        assert re.fullmatch(rf"projects/{settings.gcp.project}/attestors/[a-z][a-z0-9-]+", outputs["gar_attestor"])
        assert outputs["gar_attestor_key"].endswith("/cryptoKeys/attestor/cryptoKeyVersions/1")
    else:
        assert outputs["gar_attestor"] == outputs["gar_attestor_key"] == ""
    assert main(["images", "targets", "--env", "nope", "--tag", "t"]) == 2


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_the_pin_edit_changes_only_the_images_and_keeps_comments(stack: str) -> None:
    path = ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    text = path.read_text()
    pins = {image: ImagePin(digest=digest(image), commit="a" * 40) for image in IMAGES}
    edited = set_images(text, PROJECT, path.name, pins)
    assert pins_in(edited, PROJECT, path.name) == pins
    first, end = images_block(text, PROJECT, path.name)
    before, after = text.splitlines(), edited.splitlines()
    assert before[:first] == after[:first], "nothing above the images block changes"
    assert before[end:] == after[len(after) - (len(before) - end) :], "nothing below it changes"
    assert "keep_last: 30  # images each registry repository keeps" in edited
    again = set_images(edited, PROJECT, path.name, pins)
    assert again == edited, "pinning the same build twice changes nothing"
    with pytest.raises(BadInput, match="images"):
        set_images("config:\n  other:images: 1\n", PROJECT, "x.yaml", pins)


# --- status and the pin pull request (git, a bare remote) -------------------------------------------


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pulumi.yaml, stacks, the program and the images' build context in git, with a bare remote."""
    return git_repository(
        tmp_path,
        monkeypatch,
        folders=("stacks", "infra", "apps", "pipelines", "policies"),
        files=("Pulumi.yaml", "pyproject.toml", "uv.lock", "README.md", ".dockerignore"),
    )


def commit_file(repo: Path, path: str, text: str, message: str) -> str:
    (repo / path).write_text(text)
    git(repo, "add", path)
    git(repo, "commit", "-qm", message)
    git(repo, "push", "-q", "origin", "main")
    return git(repo, "rev-parse", "HEAD")


def merge(repo: Path, branch: str) -> None:
    git(repo, "fetch", "-q", "origin")
    git(repo, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", f"origin/{branch}")
    git(repo, "push", "-q", "origin", "main")


def test_build_context_ignores_what_the_image_does_not_copy(repo: Path) -> None:
    g = Git(repo)
    before = {image: context_id(g, "HEAD", image) for image in IMAGES}
    commit_file(repo, "stacks/notes.txt", "not in any image\n", "docs")
    assert {image: context_id(g, "HEAD", image) for image in IMAGES} == before
    commit_file(repo, "apps/serving/extra.py", "X = 1\n", "serving code")
    after = {image: context_id(g, "HEAD", image) for image in IMAGES}
    assert after["serving"] != before["serving"], "serving copies apps/"
    assert after["tracking"] == before["tracking"], "tracking copies only the lock and the project file"
    assert context_id(g, "0" * 40, "serving") is None


def test_pin_requests_in_order_and_status_follows(repo: Path) -> None:
    source = git(repo, "rev-parse", "HEAD")
    digests = {image: digest(f"dev-{image}") for image in IMAGES}
    first = request_pin(repo, "dev", digests, source, open_pr=False)
    assert first.pushed and first.branch == f"images/dev/{source[:12]}"
    assert git(repo, "diff", "--name-only", f"origin/main..origin/{first.branch}") == "stacks/Pulumi.dev.yaml"
    body = git(repo, "log", "-1", "--format=%B", f"origin/{first.branch}")
    assert f"Mlops-Image-Commit: {source}" in body and f"Mlops-Image-Serving: {digests['serving']}" in body
    assert any("gh pr create" in step for step in first.next_steps)

    # staging may not take a build dev does not run yet
    staging_digests = {image: digest(f"staging-{image}") for image in IMAGES}
    with pytest.raises(BadInput, match="not what dev runs"):
        request_pin(repo, "staging", staging_digests, source, open_pr=False)
    merge(repo, first.branch)
    rows = {(s.environment, s.image): s for s in status(repo)}
    assert rows["dev", "serving"].state == "current" and rows["dev", "serving"].digest == digests["serving"]
    assert rows["staging", "serving"].state == "not built"
    assert next_steps(list(rows.values())) == [
        f"staging: gh workflow run images.yml -f environment=staging -f ref={source}"
    ]
    second = request_pin(repo, "staging", staging_digests, source, open_pr=False)
    merge(repo, second.branch)
    assert load_stack(repo, "staging").images.serving == ImagePin(digest=staging_digests["serving"], commit=source)

    # a change to the serving code: dev's build is behind, tracking's is not
    (repo / "apps" / "serving" / "extra.py").write_text("X = 2\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "serving change")
    rows = {(s.environment, s.image): s for s in status(repo)}
    assert rows["dev", "serving"].state == "behind" and "1 commit(s)" in rows["dev", "serving"].detail
    assert rows["dev", "tracking"].state == "current"
    assert next_steps(list(rows.values()))[0] == "dev: gh workflow run images.yml -f environment=dev"


def test_pin_refusals_change_nothing(repo: Path) -> None:
    source = git(repo, "rev-parse", "HEAD")
    good = {image: digest(image) for image in IMAGES}
    branches = git(repo, "branch", "--list")
    cases: list[tuple[str, dict[str, str], str, str | None, str]] = [
        ("local", good, source, None, "--registry is required for the local stack"),
        ("local", good, source, "http://127.0.0.1:5000/x", "--registry must be <registry host"),
        ("local", good, source, "127.0.0.1:5000", "--registry must be <registry host"),
        ("local", {**good, "tracking": "latest"}, source, "127.0.0.1:5000/p", "--tracking must be a digest"),
        ("dev", good, source, "127.0.0.1:5000/p", "--registry is for the local stack only"),
        ("qa", good, source, None, "--env must be one of"),
        ("dev", {**good, "serving": "sha256:abc"}, source, None, "--serving must be a digest"),
        ("dev", good, source[:12], None, "--commit must be a full"),
        ("dev", good, "f" * 40, None, "not in this clone"),
    ]
    for environment, digests, commit, registry, message in cases:
        with pytest.raises(BadInput, match=message):
            request_pin(repo, environment, digests, commit, open_pr=False, registry=registry)
    assert git(repo, "branch", "--list") == branches
    assert git(repo, "ls-remote", "--heads", "origin").count("refs/heads/") == 1
    (repo / "README.md").write_text("changed, not committed")
    with pytest.raises(BadInput, match="uncommitted"):
        request_pin(repo, "dev", good, source, open_pr=False)
    assert git(repo, "branch", "--list") == branches


def test_images_status_command(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["images", "status", "--format", "json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert {(r["environment"], r["image"]) for r in rows} == {(s, i) for s in list_stacks(ROOT) for i in IMAGES}
    assert {r["state"] for r in rows} == {"not built"}
    assert main(["images", "status", "--env", "nope"]) == 2

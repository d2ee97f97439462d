"""`copier update`: a project generated from v1 takes v2's changes and keeps its user's edits and answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import copier
import pytest
import yaml
from common import ROOT, git_init, render, run

pytestmark = pytest.mark.slow

IGNORED = shutil.ignore_patterns(".git", ".venv", ".tools", "build", "__pycache__", ".pytest_cache", ".ruff_cache")


@pytest.fixture
def template_v1(tmp_path: Path) -> Path:
    """A copy of this template (working tree, uncommitted changes included) as its own repo, tagged v1."""
    source = tmp_path / "template-repo"
    shutil.copytree(ROOT, source, ignore=IGNORED)
    git_init(source, "template v1")
    run(["git", "tag", "v1"], source)
    return source


def test_update_keeps_user_edits_and_answers(template_v1: Path, tmp_path: Path) -> None:
    project = render(
        tmp_path / "platform",
        {"clouds": "gcp", "model_name": "churn", "budget_prod_usd": "2500"},
        src=template_v1,
        vcs_ref="v1",
    )
    git_init(project, "generated from v1")

    # The user edits their repository: a note in the README and a bigger dev spot pool.
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Team notes\n\nOn call: the ML platform team.\n")
    dev = project / "stacks" / "Pulumi.dev.yaml"
    dev.write_text(
        dev.read_text().replace("        max_nodes: 3\n        spot: true", "        max_nodes: 5\n        spot: true")
    )
    run(["git", "commit", "-qam", "team edits"], project)

    # The template moves on: a new Makefile target and a changed comment in a stack file.
    makefile = template_v1 / "template" / "Makefile"
    makefile.write_text(makefile.read_text() + "\nversion: ## Print the template version\n\t@echo v2\n")
    staging = template_v1 / "template" / "stacks" / "Pulumi.staging.yaml.jinja"
    staging.write_text(
        staging.read_text().replace("validated by infra/settings/.", "validated by infra/settings/ (v2).")
    )
    run(["git", "commit", "-qam", "template v2"], template_v1)
    run(["git", "tag", "v2"], template_v1)

    copier.run_update(str(project), defaults=True, overwrite=True, unsafe=False, quiet=True, vcs_ref="v2")

    assert "## Team notes" in readme.read_text(), "user edit to README survives"
    assert "max_nodes: 5" in dev.read_text(), "user edit to a stack file survives"
    assert "version: ## Print the template version" in (project / "Makefile").read_text(), "template change arrives"
    assert "(v2)" in (project / "stacks" / "Pulumi.staging.yaml").read_text()
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    assert answers["_commit"] == "v2"
    assert (answers["clouds"], answers["model_name"], answers["budget_prod_usd"]) == ("gcp", "churn", "2500")
    assert "monthly_usd: 2500\n" in (project / "stacks" / "Pulumi.prod.yaml").read_text(), "a number in the stack file"
    assert not list(project.rglob("*.rej")), "no merge conflicts"

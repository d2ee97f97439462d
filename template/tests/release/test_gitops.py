"""Git as the desired state, without servers: the pin edit, the pin history, what a change concerns,
and the requests refused before anything is written (real git repositories, a bare remote)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from core.errors import BadInput
from infra.config import list_stacks, project_name
from pipelines.common.git import Git
from pipelines.release.gate import affected
from pipelines.release.pins import pin_history, pin_in, set_pin
from pipelines.release.promote import request_promotion
from pipelines.release.rollback import rollback
from tests.conftest import ROOT, git, git_repository

PROJECT = project_name(ROOT)
CLOUD_STACKS = [s for s in list_stacks(ROOT) if s != "local"]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This project's Pulumi.yaml, stacks and program in a git repository with a bare remote."""
    return git_repository(tmp_path, monkeypatch, folders=("stacks", "infra"), files=("Pulumi.yaml",))


def set_version(repo: Path, environment: str, version: int | None, message: str) -> str:
    path = repo / "stacks" / f"Pulumi.{environment}.yaml"
    path.write_text(set_pin(path.read_text(), path.name, PROJECT, version))
    git(repo, "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_the_pin_edit_changes_one_line_and_keeps_the_comments(stack: str) -> None:
    text = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    model, version, _ = pin_in(text, stack, PROJECT)
    edited = set_pin(text, stack, PROJECT, 42)
    changed = [line for line in difflib.ndiff(text.splitlines(), edited.splitlines()) if line[:1] in "+-"]
    assert len(changed) == 2 and changed[1][1:].strip().startswith("version: 42")
    assert "# set by `mlops promote" in changed[1]
    assert pin_in(edited, stack, PROJECT) == (model, 42, pin_in(text, stack, PROJECT)[2])
    assert set_pin(edited, stack, PROJECT, version) == text  # and back, byte for byte


def test_a_file_without_a_pin_is_refused_naming_it() -> None:
    with pytest.raises(BadInput, match=r"stacks/Pulumi.x.yaml: no .*:serving.model section"):
        set_pin("config:\n  a: 1\n", "stacks/Pulumi.x.yaml", PROJECT, 3)


def test_pin_history_reads_promotions_merges_and_reverts(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    promoted = set_version(repo, "dev", 3, "Promote m v3 to dev\n\nMlops-Change: promotion")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "feature", "-m", "Merge pull request #12 from acme/feature")
    merge = git(repo, "rev-parse", "HEAD")
    git(repo, "revert", "--no-edit", "-m", "1", merge)
    set_version(repo, "staging", 3, "Edit staging by hand (#13)")
    history = pin_history(Git(repo), "dev")
    assert [(c.kind, c.before, c.after) for c in history[:2]] == [("rollback", 3, None), ("promotion", None, 3)]
    assert history[1].commit == merge and history[1].pull_request == 12  # first-parent: the merge, not the branch
    assert promoted not in [c.commit for c in history]
    (staging, *_) = pin_history(Git(repo), "staging")
    assert (staging.kind, staging.after, staging.pull_request) == ("edit", 3, 13)


def test_what_a_change_concerns(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    set_version(repo, "staging", 2, "staging only")
    assert [affected(repo, e, base) for e in CLOUD_STACKS] == [e == "staging" for e in CLOUD_STACKS]
    (repo / "infra" / "naming.py").write_text((repo / "infra" / "naming.py").read_text() + "\n")
    git(repo, "commit", "-q", "-am", "program change")
    assert all(affected(repo, e, base) for e in CLOUD_STACKS)
    assert affected(repo, "dev", "0" * 40)  # a new branch: everything
    with pytest.raises(BadInput, match="unknown git ref 'nope'"):
        affected(repo, "dev", "nope")


def test_requests_refused_before_anything_is_written(repo: Path) -> None:
    refs = git(repo, "show-ref")
    staging = CLOUD_STACKS[1]
    with pytest.raises(BadInput, match="may not skip an environment"):
        request_promotion(repo, pin_in((repo / "stacks/Pulumi.dev.yaml").read_text(), "", PROJECT)[0], 1, staging)
    with pytest.raises(BadInput, match="no change of dev's pin to roll back"):
        rollback(repo, "dev")
    with pytest.raises(BadInput, match="no git remote named 'upstream'"):
        rollback(repo, "dev", remote="upstream")
    (repo / "stacks" / "Pulumi.dev.yaml").write_text("# dirty\n" + (repo / "stacks" / "Pulumi.dev.yaml").read_text())
    (repo / "Pulumi.yaml").write_text((repo / "Pulumi.yaml").read_text() + "# dirty\n")
    with pytest.raises(BadInput, match=r"uncommitted changes \(Pulumi\.yaml, stacks/Pulumi\.dev\.yaml\)"):
        rollback(repo, "dev")  # every path whole (the first one lost its first character)
    with pytest.raises(BadInput, match="cannot roll back 'qa': it is not one of the environments"):
        rollback(repo, "qa")
    git(repo, "checkout", "-q", "--", "stacks", "Pulumi.yaml")
    assert git(repo, "show-ref") == refs and not git(repo, "worktree", "list").count("\n")


def test_versions_are_named_without_a_stray_v() -> None:
    from pipelines.release.commands import served

    assert (served(2), served(None), served(None, "—")) == ("v2", "nothing", "—")

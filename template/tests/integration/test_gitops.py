"""Model releases by pull request, for real: git repositories with a bare remote, the local MLflow server.

A scratch repository (this project's Pulumi.yaml, stacks, program and model policies, serving a model
of its own so the local environment's registries are left alone) is pushed to a bare remote; the
person, CI and the deploy job each work in their own clone, as they would on GitHub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from core.registry import client_for, find_by_model_version, registered_name
from infra.config import project_name
from pipelines.cli import main
from tests.gitops_world import (
    git,
    in_clone,
    merged_promotion,
    pin,
    registry_state,
    remote_state,
    serving,
)
from tests.prometheus import recorded_shadow

pytestmark = pytest.mark.integration


def test_promotion_through_every_environment_then_rollback(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    person, ci, deploy = (world["clones"][w] for w in ("person", "ci", "deploy"))
    model, candidate = world["model"], world["versions"][1]
    for environment in ("dev", "staging", "prod"):
        if environment == "prod":  # prod first scores the candidate as its shadow: the evidence its gate wants
            shadow_then_refused_without_evidence(world, capsys, candidate)
        # the person opens the pull request
        git(person, "checkout", "-q", "main")
        git(person, "pull", "-q", "--ff-only", "origin", "main")
        request = ["promote", model, "--version", str(candidate), "--to", environment, "--no-pr"]
        assert in_clone(world, "person", *request) == 0
        branch = f"promote/{environment}/{model}-v{candidate}"
        changed = git(person, "diff", "--numstat", "origin/main", branch)
        lines = 2 if environment == "prod" else 1  # the pin (and in prod the shadow, which serves now)
        assert changed == f"{lines}\t{lines}\tstacks/Pulumi.{environment}.yaml"
        assert pin(person, branch, environment) == str(candidate)
        assert "# set by `mlops promote" in git(person, "show", f"{branch}:stacks/Pulumi.{environment}.yaml")
        # CI gates it
        git(ci, "fetch", "-q", "origin")
        git(ci, "checkout", "-q", "-B", "pr", f"origin/{branch}")
        report_file = tmp_path / f"gate-{environment}.md"
        capsys.readouterr()
        gate = ["gate", "--env", environment, "--output", str(report_file), "--record", "--format", "json"]
        if environment == "prod":  # prod's Prometheus has seen the candidate agree on 98 % of 600 requests
            with recorded_shadow(
                tmp_path, "prod", registered_name("prod", model), 1, candidate, requests=600, agree=0.98
            ) as url:
                world["patch"].setenv("MLOPS_PROMETHEUS_PROD", url)
                assert in_clone(world, "ci", *gate) == 0
            world["patch"].delenv("MLOPS_PROMETHEUS_PROD")
        else:
            assert in_clone(world, "ci", *gate) == 0
        decision = json.loads(capsys.readouterr().out)
        assert decision["passed"] and decision["model"]["kind"] == "promotion"
        assert decision["model"]["before"] == 1 and decision["model"]["after"] == candidate
        names = {c["name"] for c in decision["checks"]}
        assert "infrastructure policy" in names and "model policy: min_roc_auc" in names
        assert ("model policy: order" in names) == (environment != "dev")
        assert decision["resources"]["changed"] and not decision["resources"]["added"]
        assert decision["cost"]["delta_usd"] == 0
        markdown = report_file.read_text()
        assert f"## Gate for `{environment}`: passed" in markdown and "(candidate)" in markdown
        if environment == "prod":
            assert decision["model"]["shadow"]["agreement"] == pytest.approx(0.98, abs=0.01)
            assert f"Shadow evidence: v{candidate} beside v1" in markdown
            assert "model policy: shadow_agreement" in names
        # merge (the PR is up to date: a fast-forward), then the deploy job syncs
        git(ci, "push", "-q", "origin", "HEAD:main")
        git(deploy, "pull", "-q", "--ff-only", "origin", "main")
        assert serving(world, environment) == 1
        assert in_clone(world, "deploy", "sync", "--env", environment, "--pr", "7") == 0
        assert serving(world, environment) == candidate
        assert in_clone(world, "deploy", "sync", "--env", environment) == 0  # idempotent
        assert "already serves" in capsys.readouterr().out
        version = find_by_model_version(
            client_for(world["uri"]), registered_name(environment, world["model"]), candidate
        )
        assert version is not None
        assert version.tags[f"deploy.{environment}.commit"] == git(deploy, "rev-parse", "HEAD")
        assert version.tags[f"deploy.{environment}.pr"] == "7"
        assert version.tags["model_version"] == str(candidate) and version.tags["artifact_sha256"]

    # the smoke test failed: roll prod back (straight to main, as the deploy workflow does)
    assert in_clone(world, "deploy", "rollback", "--env", "prod", "--push", "--reason", "smoke test failed") == 0
    git(deploy, "pull", "-q", "--ff-only", "origin", "main")
    assert pin(deploy, "origin/main", "prod") == "1"
    message = git(deploy, "log", "-1", "--format=%B")
    assert "Mlops-Change: rollback" in message and "smoke test failed" in message
    assert in_clone(world, "deploy", "sync", "--env", "prod") == 0
    assert serving(world, "prod") == 1
    # a second rollback has nothing left to revert
    assert in_clone(world, "deploy", "rollback", "--env", "prod", "--push") == 2
    assert "already a rollback" in capsys.readouterr().err

    capsys.readouterr()
    assert in_clone(world, "deploy", "report", "--env", "prod", "--format", "json") == 0
    trail = json.loads(capsys.readouterr().out)["entries"]
    assert [(e["kind"], e["previous"], e["version"]) for e in trail[:2]] == [
        ("rollback", candidate, 1),
        ("promotion", 1, candidate),
    ]
    assert trail[1]["author"] == "Pat Promoter" and trail[1]["until"] == trail[0]["date"]
    assert trail[1]["gate"]["passed"] == "true"  # recorded by the gate on the staging copy
    assert trail[0]["deployment"]["commit"] == git(deploy, "rev-parse", "HEAD")
    lineage = trail[1]["lineage"]  # copied from dev's version through staging's
    assert (
        lineage["dataset_sha256"] and lineage["training_run_id"] and lineage["explanation"] == "permutation_importance"
    )


def shadow_then_refused_without_evidence(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], candidate: int
) -> None:
    """`promote --shadow`: a one-line PR, gated like a promotion but for the evidence it is to gather, merged;
    then the promotion's gate refuses while prod's Prometheus has no evidence of it."""
    person, ci, model = world["clones"]["person"], world["clones"]["ci"], world["model"]
    git(person, "checkout", "-q", "main")
    git(person, "pull", "-q", "--ff-only", "origin", "main")
    assert (
        in_clone(world, "person", "promote", model, "--version", str(candidate), "--to", "prod", "--shadow", "--no-pr")
        == 0
    )
    branch = f"shadow/prod/{model}-v{candidate}"
    assert git(person, "diff", "--numstat", "origin/main", branch) == "1\t1\tstacks/Pulumi.prod.yaml"
    shown = git(person, "show", f"{branch}:stacks/Pulumi.prod.yaml")
    assert f"shadow: {{version: {candidate}, sample_pct: 10}}" in shown
    assert "Mlops-Change: shadow" in git(person, "log", "-1", "--format=%B", branch)
    git(ci, "fetch", "-q", "origin")
    git(ci, "checkout", "-q", "-B", "pr", f"origin/{branch}")
    capsys.readouterr()
    assert in_clone(world, "ci", "gate", "--env", "prod", "--format", "json") == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["model"]["kind"] == "shadow" and decision["model"]["after"] == candidate
    assert not any("shadow" in c["name"] for c in decision["checks"]), "no evidence asked of a shadow"
    git(ci, "push", "-q", "origin", "HEAD:main")
    # the promotion itself, before prod's Prometheus has seen anything of it
    git(person, "pull", "-q", "--ff-only", "origin", "main")
    assert in_clone(world, "person", "promote", model, "--version", str(candidate), "--to", "prod", "--no-pr") == 0
    git(ci, "fetch", "-q", "origin")
    git(ci, "checkout", "-q", "-B", "pr", f"origin/promote/prod/{model}-v{candidate}")
    capsys.readouterr()
    assert in_clone(world, "ci", "gate", "--env", "prod", "--format", "json") == 1
    refused = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert not refused["model policy: shadow_evidence"]["passed"]
    assert "has not scored prod's traffic beside version 1" in refused["model policy: shadow_evidence"]["detail"]
    git(person, "branch", "-q", "-D", f"promote/prod/{model}-v{candidate}")
    git(person, "push", "-q", "origin", "--delete", f"promote/prod/{model}-v{candidate}")


def test_two_promotions_race_for_one_environment(world: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    person, other, ci = (world["clones"][w] for w in ("person", "other", "ci"))
    merged_promotion(world, "dev", world["versions"][1])  # something to roll back
    for clone in (person, other):
        git(clone, "checkout", "-q", "main")
        git(clone, "pull", "-q", "--ff-only", "origin", "main")
    dev_pin = pin(person, "origin/main", "dev")
    # the same change twice (two people roll dev back at once): the second push is refused, nothing is left
    assert in_clone(world, "person", "rollback", "--env", "dev", "--no-pr") == 0
    before = remote_state(world)
    with pytest.MonkeyPatch.context() as olive:
        olive.setenv("GIT_AUTHOR_NAME", "Olive Other")
        olive.setenv("GIT_COMMITTER_NAME", "Olive Other")
        assert in_clone(world, "other", "rollback", "--env", "dev", "--no-pr") == 1
    assert "was refused" in capsys.readouterr().err
    assert remote_state(world) == before
    assert not git(other, "branch", "--list", "rollback/*")
    # another change reaches main first: the open pull request is stale, and its gate says so
    (branch,) = git(person, "branch", "--list", "--format=%(refname:short)", "rollback/*").split()
    git(ci, "fetch", "-q", "origin")
    git(ci, "checkout", "-q", "-B", "first", "origin/main")
    git(ci, "commit", "-q", "--allow-empty", "-m", "Another change merged first")
    git(ci, "push", "-q", "origin", "HEAD:main")
    git(ci, "fetch", "-q", "origin")
    git(ci, "checkout", "-q", "-B", "pr", f"origin/{branch}")
    capsys.readouterr()
    assert in_clone(world, "ci", "gate", "--env", "dev", "--format", "json") == 1
    decision = json.loads(capsys.readouterr().out)
    (stale,) = [c for c in decision["checks"] if not c["passed"]]
    assert stale["name"] == "branch contains the base" and "moved on" in stale["detail"]
    assert decision["model"]["kind"] == "rollback"
    assert pin(ci, "origin/main", "dev") == dev_pin  # nothing was half-applied


def test_bad_requests_change_nothing(world: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    person, model = world["clones"]["person"], world["model"]
    for environment in ("dev", "staging"):  # staging serves the candidate, so prod may take it
        merged_promotion(world, environment, world["versions"][1])
    git(person, "checkout", "-q", "main")
    git(person, "pull", "-q", "--ff-only", "origin", "main")
    remote, registries = remote_state(world), registry_state(world)
    branches = git(person, "branch", "--list")
    staging = int(pin(person, "origin/main", "staging"))
    newest = max(world["versions"])
    cases: list[tuple[list[str], int, str]] = [
        (["promote", model, "--version", "999", "--to", "dev", "--no-pr"], 2, "is not in the dev registry"),
        (["promote", model, "--version", str(newest + 1), "--to", "prod", "--no-pr"], 2, "may not skip"),
        (["promote", model, "--version", str(staging), "--to", "qa", "--no-pr"], 2, "dev → staging → prod"),
        (["promote", "other-model", "--version", "1", "--to", "dev", "--no-pr"], 2, f"serves model '{world['model']}'"),
        (["promote", model, "--version", "0", "--to", "dev", "--no-pr"], 2, "positive model version"),
        (["gate", "--env", "dev", "--base", "no-such-ref"], 2, "unknown git ref 'no-such-ref'"),
        (["rollback", "--env", "dev", "--remote", "upstream"], 2, "no git remote named 'upstream'"),
    ]
    for argv, code, message in cases:
        assert in_clone(world, "person", *argv) == code, argv
        assert message in capsys.readouterr().err, argv
    # a dirty working tree
    (person / "stacks" / "Pulumi.dev.yaml").write_text((person / "stacks" / "Pulumi.dev.yaml").read_text() + "\n# x\n")
    assert in_clone(world, "person", "promote", model, "--version", "1", "--to", "dev", "--no-pr") == 2
    assert "uncommitted changes" in capsys.readouterr().err
    git(person, "checkout", "-q", "--", "stacks")
    # no remote at all
    lonely = tmp_path / "lonely"
    shutil.copytree(person, lonely, ignore=shutil.ignore_patterns(".git"))
    git(lonely, "init", "-q", "-b", "main")
    git(lonely, "add", ".")
    git(lonely, "commit", "-q", "-m", "no remote")
    assert in_clone(world, "person", "promote", model, "--version", "1", "--to", "dev", "--remote", "nope") == 2
    world["patch"].setenv("MLOPS_ROOT", str(lonely))
    assert main(["promote", model, "--version", "1", "--to", "dev", "--no-pr"]) == 2
    assert "no git remote named 'origin'" in capsys.readouterr().err
    # a failing gate: the branch raises prod's bar past what the candidate scores
    git(person, "checkout", "-q", "-B", "strict", "origin/main")
    policy = person / "policies" / "models" / "prod.yaml"
    policy.write_text(re.sub(r"roc_auc: [0-9.]+", "roc_auc: 0.99999", policy.read_text(), count=1))
    stack = person / "stacks" / "Pulumi.prod.yaml"
    stack.write_text(re.sub(r"(\n\s+version: )\S+", rf"\g<1>{staging}", stack.read_text(), count=1))
    git(person, "commit", "-q", "-am", "Stricter prod, and a promotion")
    capsys.readouterr()
    assert in_clone(world, "person", "gate", "--env", "prod", "--format", "json") == 1
    decision = json.loads(capsys.readouterr().out)
    failed = {c["name"] for c in decision["checks"] if not c["passed"]}
    assert failed == {"model policy: min_roc_auc", "model policy: shadow_evidence"}  # no shadow ran either
    git(person, "checkout", "-q", "main")
    git(person, "branch", "-q", "-D", "strict")
    assert git(person, "branch", "--list") == branches
    assert remote_state(world) == remote and registry_state(world) == registries


def test_report_reads_git_alone_when_no_registry_is_configured(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for environment in ("dev", "staging", "prod"):
        world["patch"].delenv(f"MLOPS_REGISTRY_{environment.upper()}", raising=False)
    world["patch"].setenv("MLOPS_LOCAL_HOME", str(world["clones"]["deploy"] / ".nothing-runs-here"))
    try:
        assert in_clone(world, "deploy", "report", "--env", "staging", "--format", "json") == 0
        captured = capsys.readouterr()
        data = json.loads(captured.out)
        assert data["entries"] and all(e["deployment"] == {} for e in data["entries"])
        assert "registry not read" in captured.err
        assert os.environ["MLOPS_ROOT"].endswith("deploy") and project_name(world["clones"]["deploy"])
    finally:
        for environment in ("dev", "staging", "prod"):
            world["patch"].setenv(f"MLOPS_REGISTRY_{environment.upper()}", world["uri"])

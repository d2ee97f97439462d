"""Ctrl-C (SIGINT) and SIGTERM during `promote`, `images pin` and `rollback`: their branches (local and
pushed) and worktrees are gone, and the same command run again converges.

A `git` on PATH in front of the real one stops the command at a chosen git call (before its push, or
after it, at the worktree's removal), so the signal arrives there and nowhere else.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import MLOPS
from tests.gitops_world import git, merged_promotion, remote_state

SHIM = """#!/bin/sh
# Stops the first `git {when}` until the test releases it (at most 60 s), then runs the real git.
if [ "$1 $2" = "{when}" ] || [ "$1" = "{when}" ]; then
  if [ ! -e "{marker}" ]; then
    : > "{marker}"
    i=0
    while [ ! -e "{release}" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
  fi
fi
exec {git} "$@"
"""
POINTS = {"before the push": "push", "after the push": "worktree remove"}


def interrupted(world: dict[str, Any], tmp_path: Path, args: list[str], when: str, signum: int) -> str:
    """Run `mlops ARGS` in the person's clone, stopped at `git WHEN`; send `signum` there."""
    bin_dir, marker, release = tmp_path / "bin", tmp_path / "stopped", tmp_path / "release"
    bin_dir.mkdir(exist_ok=True)
    for path in (marker, release):
        path.unlink(missing_ok=True)
    real = subprocess.run(["sh", "-c", "command -v git"], capture_output=True, text=True, check=True).stdout.strip()
    shim = bin_dir / "git"
    shim.write_text(SHIM.format(when=when, marker=marker, release=release, git=real))
    shim.chmod(0o755)
    env = {**os.environ, "MLOPS_ROOT": str(world["clones"]["person"]), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    process = subprocess.Popen(
        [MLOPS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, f"it ended before `git {when}`: {process.communicate()[0]}"
            assert time.monotonic() < deadline, f"`git {when}` never came"
            time.sleep(0.05)
        process.send_signal(signum)
        time.sleep(0.3)
        release.touch()  # a git call that runs while signals wait (a worktree's removal) may finish
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode == (143 if signum == signal.SIGTERM else 130), output
    assert "Traceback" not in output, output
    return output


def assert_nothing_left(world: dict[str, Any], prefix: str) -> None:
    person = world["clones"]["person"]
    assert not [b for b in git(person, "branch", "--list", f"{prefix}*").split() if b != "*"], "local branch left"
    assert not [ref for ref in remote_state(world) if ref.startswith(f"refs/heads/{prefix}")], "remote branch left"
    assert git(person, "worktree", "list").count("\n") == 0, git(person, "worktree", "list")
    assert not git(person, "status", "--porcelain"), "the person's checkout is untouched"


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_promotion_leaves_nothing_and_runs_again(
    world: dict[str, Any], tmp_path: Path, point: str, signum: int
) -> None:
    model = world["model"]
    args = ["promote", model, "--version", "2", "--to", "dev", "--no-pr"]
    interrupted(world, tmp_path, args, POINTS[point], signum)
    assert_nothing_left(world, "promote/")
    env = {**os.environ, "MLOPS_ROOT": str(world["clones"]["person"])}
    again = subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"refs/heads/promote/dev/{model}-v2" in remote_state(world), "the re-run pushed its branch"


def test_an_interrupted_rollback_leaves_nothing_and_runs_again(world: dict[str, Any], tmp_path: Path) -> None:
    merged_promotion(world, "dev", 2)
    interrupted(world, tmp_path, ["rollback", "--env", "dev", "--no-pr"], POINTS["after the push"], signal.SIGTERM)
    assert_nothing_left(world, "rollback/")
    env = {**os.environ, "MLOPS_ROOT": str(world["clones"]["person"])}
    git(world["clones"]["person"], "pull", "-q", "--ff-only", "origin", "main")
    args = [MLOPS, "rollback", "--env", "dev", "--no-pr"]
    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "v2 → v1" in again.stdout


def test_an_interrupted_image_pin_leaves_nothing_and_runs_again(world: dict[str, Any], tmp_path: Path) -> None:
    commit = git(world["clones"]["person"], "rev-parse", "HEAD")
    args = ["images", "pin", "--env", "dev", "--serving", "sha256:" + "1" * 64, "--tracking", "sha256:" + "2" * 64]
    args += ["--commit", commit, "--no-pr"]
    interrupted(world, tmp_path, args, POINTS["before the push"], signal.SIGINT)
    assert_nothing_left(world, "images/")
    env = {**os.environ, "MLOPS_ROOT": str(world["clones"]["person"])}
    again = subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"refs/heads/images/dev/{commit[:12]}" in remote_state(world)


def test_a_killed_sync_converges(world: dict[str, Any], rng: random.Random) -> None:
    """`mlops sync` SIGKILLed at a seeded random moment while it copies a version into staging: the alias
    is on an intact version (the old one or the verified copy) and the next sync finishes the job."""
    from core.registry import champion, client_for, registered_name, verify_artifacts

    merged_promotion(world, "dev", 2)
    person, deploy, model = world["clones"]["person"], world["clones"]["deploy"], world["model"]
    git(person, "pull", "-q", "--ff-only", "origin", "main")
    env = {**os.environ, "MLOPS_ROOT": str(person)}
    promote = [MLOPS, "promote", model, "--version", "2", "--to", "staging", "--no-pr"]
    assert subprocess.run(promote, env=env, capture_output=True, timeout=120, check=False).returncode == 0
    git(person, "push", "-q", "origin", f"promote/staging/{model}-v2:main")
    git(deploy, "pull", "-q", "--ff-only", "origin", "main")
    sync = [MLOPS, "sync", "--env", "staging"]
    env = {**os.environ, "MLOPS_ROOT": str(deploy)}
    process = subprocess.Popen(sync, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(1.0, 4.0))
    process.kill()
    process.wait(timeout=30)
    name = registered_name("staging", model)
    served = champion(client_for(world["uri"]), name)
    assert served is not None and served.model_version in {1, 2}
    verify_artifacts(world["uri"], served)
    again = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    served = champion(client_for(world["uri"]), name)
    assert served is not None and served.model_version == 2
    verify_artifacts(world["uri"], served)

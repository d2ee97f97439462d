"""Kill the local servers and the commands that drive them; a re-run converges and nothing is lost."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipelines.local import objectstore
from pipelines.local.servers import BUCKET_PREFIX
from tests.faults.conftest import (
    MLOPS,
    assert_champions_intact,
    assert_nothing_left,
    assert_status_truthful,
    environment,
    kill_cli_at,
    processes_of,
    run_cli,
)

# Where `mlops local up --train` is killed: the progress lines it prints, in order.
UP_POINTS = (
    "waiting for the object store",
    "waiting for the MLflow tracking server",
    "training",
    "gate + promote",
    "to staging",
    "to prod",
    "waiting for BentoML serving",
    "smoke-testing",
)


def up(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli(home, "local", "up", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def objects(home: Path) -> dict[str, int]:
    store = environment(home).state()["object_store"]
    return objectstore.count_objects(store.port, BUCKET_PREFIX)


@pytest.mark.parametrize(
    ("server", "how"),
    [
        ("object_store", "group"),
        ("tracking", "group"),
        ("tracking", "parent"),
        ("serving", "group"),
        ("serving", "parent"),
    ],
)
def test_a_killed_server_loses_nothing_and_up_converges(fault_home: Path, server: str, how: str) -> None:
    up(fault_home)
    env = environment(fault_home)
    served, stored = assert_champions_intact(env), objects(fault_home)
    victim = env.state()[server]
    if how == "group":
        os.killpg(victim.pid, signal.SIGKILL)
    else:
        os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while env.state()[server].alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = {row["service"]: row for row in env.status()}
    assert rows[server]["state"] != "running", rows[server]
    if how == "parent" and server == "serving":  # BentoML's worker runs in a session of its own
        assert rows[server]["state"] == "leaked" and rows[server]["processes"] >= 1, rows[server]
    assert_status_truthful(env)
    up(fault_home)
    assert all(row["state"] == "running" for row in env.status()), env.status()
    assert not [p for p in victim.members() if p != victim.pid], "the leaked processes were stopped"
    assert assert_champions_intact(env) == served, "every champion is back, with its artifacts intact"
    assert all(objects(fault_home)[name] >= count for name, count in stored.items()), "no object was lost"


def test_up_killed_at_a_random_point_converges(fault_home: Path, rng: random.Random) -> None:
    up(fault_home)
    env = environment(fault_home)
    before = assert_champions_intact(env)
    for point in rng.sample(UP_POINTS, 3):
        kill_cli_at(fault_home, ["local", "up", "--train"], point)
        assert_status_truthful(env)
        up(fault_home)
        after = assert_champions_intact(env)
        assert after["prod"] is not None and after["prod"] >= before["prod"], (point, before, after)
        before = after


def test_a_killed_promotion_leaves_the_alias_on_an_intact_version(fault_home: Path) -> None:
    """Killed while it copies a new version into staging: staging's alias is still on an intact version
    (the old one, or the verified copy), and promoting again converges."""
    up(fault_home)
    env = environment(fault_home)
    before = assert_champions_intact(env)
    output = kill_cli_at(fault_home, ["local", "up", "--train"], "to staging")
    version = int(output.split(" to staging")[0].rsplit("version ", 1)[1])
    served = assert_champions_intact(env)
    assert served["dev"] == version and served["staging"] in {before["staging"], version}, (before, served)
    again = run_cli(fault_home, "local", "promote", env.model, "--version", str(version), "--to", "staging")
    assert again.returncode == 0, again.stdout + again.stderr
    assert assert_champions_intact(env)["staging"] == version
    up(fault_home)


def test_a_store_that_lost_its_artifacts_is_said_so_and_nothing_points_at_them(fault_home: Path) -> None:
    up(fault_home)
    env = environment(fault_home)
    port = env.state()["object_store"].port
    s3 = objectstore.s3_client(port)
    bucket = objectstore.bucket(BUCKET_PREFIX, "prod")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
    result = run_cli(fault_home, "local", "up")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the object store lost what the environments serve" in result.stderr
    assert "prod:" in result.stderr and "its artifacts are missing from the store" in result.stderr
    assert "mlops local up --train" in result.stderr, "it says how to recover"
    assert "Traceback" not in result.stdout + result.stderr
    up(fault_home, "--train")  # the way out it names
    assert assert_champions_intact(env)["prod"] is not None


def test_a_pid_of_another_program_is_never_signalled(fault_home: Path) -> None:
    up(fault_home)
    env = environment(fault_home)
    stranger = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        raw = env.state_file.read_text()
        real = env.state()["tracking"]
        env.state_file.write_text(raw.replace(f'"pid": {real.pid},', f'"pid": {stranger.pid},', 1))
        rows = {row["service"]: row for row in env.status()}
        assert rows["tracking"]["state"] in {"leaked", "not ours"}, rows["tracking"]
        assert rows["tracking"]["pid"] == stranger.pid
        result = run_cli(fault_home, "local", "down")
        assert result.returncode == 0, result.stdout + result.stderr
        assert stranger.poll() is None, "the unrelated process was not signalled"
        assert not real.members(), "the real tracking server was stopped (found by its token)"
        assert_nothing_left(fault_home)
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


def test_two_ups_at_once_one_waits_or_is_refused(fault_home: Path) -> None:
    run_cli(fault_home, "local", "down")
    first = subprocess.Popen(
        [MLOPS, "local", "up"],
        env={**os.environ, "MLOPS_LOCAL_HOME": str(fault_home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (fault_home / "lock").exists() or not processes_of(fault_home):
            assert time.monotonic() < deadline, "the first `up` did not start"
            time.sleep(0.1)
        refused = run_cli(fault_home, "local", "up")
        assert refused.returncode == 3
        assert f"another `mlops local …` is running (pid {first.pid}: mlops local up)" in refused.stderr
        waited = run_cli(fault_home, "local", "up", "--wait", "300")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    result = run_cli(fault_home, "local", "down")
    assert result.returncode == 0 and "Stopped:" in result.stdout
    assert_nothing_left(fault_home)
    assert environment(fault_home).status() == []


def test_a_lost_state_file_never_leads_to_a_second_store_on_the_same_data(fault_home: Path) -> None:
    up(fault_home)
    env = environment(fault_home)
    store = env.state()["object_store"]
    orphans = processes_of(fault_home)
    env.state_file.unlink()  # the servers run on, recorded nowhere
    try:
        result = run_cli(fault_home, "local", "up")
        assert result.returncode == 3, result.stdout + result.stderr
        assert f"another object store (pid {store.pid}) serves {fault_home / 'store'}" in result.stderr
        assert store.alive(), "a process this state does not record is never signalled"
    finally:  # they are this test's own servers: stop them by hand, as the message says
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert_nothing_left(fault_home)
    up(fault_home)
    assert assert_champions_intact(env)["prod"] is not None, "the data is all there"

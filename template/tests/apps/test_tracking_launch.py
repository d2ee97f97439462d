"""The tracking server's launcher: secrets from files into the started program's environment, and every
bad argument refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from apps.tracking.launch import secret_environment

SHOW = "import os, sys; print(os.environ['PGPASSWORD'], os.environ.get('OTHER', '-')); sys.exit(3)"


def launch(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "apps.tracking.launch", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_program_gets_the_files_contents_and_its_own_exit_code(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret value\n")
    done = launch(f"--secret=PGPASSWORD={tmp_path / 'password'}", "--", sys.executable, "-c", SHOW)
    assert done.returncode == 3, done.stderr  # the program replaced the launcher
    assert done.stdout == "s3cret value -\n"  # the trailing newline is dropped, nothing else is added


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("PGPASSWORD", "expected NAME=PATH"),
        ("pg-password={file}", "expected NAME=PATH"),
        ("PGPASSWORD={missing}", "PGPASSWORD: cannot read"),
        ("PGPASSWORD={empty}", "is empty"),
    ],
)
def test_a_bad_secret_stops_before_the_program_starts(tmp_path: Path, pair: str, message: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").write_text("\n")
    paths = {name: tmp_path / name for name in ("file", "missing", "empty")}
    marker = tmp_path / "started"
    done = launch(f"--secret={pair.format(**paths)}", "--", "touch", str(marker))
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not marker.exists()


def test_a_secret_given_twice_and_no_program_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p").write_text("x")
    with pytest.raises(SystemExit, match="given twice"):
        secret_environment([f"PGPASSWORD={tmp_path / 'p'}", f"PGPASSWORD={tmp_path / 'p'}"])
    done = launch(f"--secret=PGPASSWORD={tmp_path / 'p'}", "--")
    assert done.returncode == 2 and "no program to start" in done.stderr

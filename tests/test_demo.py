"""The README's first command: render with the default answers, install, and run the main job (`mlops local up`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from common import ROOT, run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]


def test_demo_brings_the_local_platform_up(tmp_path: Path) -> None:
    destination = tmp_path / "demo"
    try:
        result = run([sys.executable, ROOT / "scripts" / "demo.py", destination], ROOT, env={"VIRTUAL_ENV": ""})
        assert "Demo ready in" in result.stdout
        assert "prod serves v1" in result.stdout, result.stdout[-3000:]
        status = run([destination / ".venv/bin/mlops", "local", "status", "--format", "json"], destination)
        states = {row["service"]: row["state"] for row in json.loads(status.stdout)}
        assert states == {"object_store": "running", "tracking": "running", "serving": "running"}
    finally:
        if (destination / ".venv/bin/mlops").exists():
            run([destination / ".venv/bin/mlops", "local", "down", "--purge"], destination, check=False)
    stopped = run([destination / ".venv/bin/mlops", "local", "status"], destination)
    assert "not running" in stopped.stdout

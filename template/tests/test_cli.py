"""The `mlops` CLI: help, exit codes, output formats, error rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK
from pipelines.cli import main
from tests.conftest import ROOT
from tests.infra.test_settings import PROJECT, edit_stack

GROUPS = [
    "config",
    "local",
    "data",
    "train",
    "plan",
    "policy",
    "cost",
    "promote",
    "gate",
    "sync",
    "rollback",
    "report",
    "drift",
]


def test_console_script_help_lists_every_group() -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "mlops", "--help"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    for group in GROUPS:
        assert group in result.stdout


def test_no_arguments_shows_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) in {EXIT_OK, EXIT_BAD_INPUT}
    assert "Usage" in capsys.readouterr().out


def test_unknown_command_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy-everything"]) == EXIT_BAD_INPUT
    assert "No such command" in capsys.readouterr().err


def test_validate_all_defaults(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLOPS_ROOT", str(ROOT))
    assert main(["config", "validate", "--all", "--format", "json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [r["stack"] for r in rows] == ["local", "dev", "staging", "prod"]
    assert {r["status"] for r in rows} == {"valid"}


def test_validate_markdown(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLOPS_ROOT", str(ROOT))
    assert main(["config", "validate", "--env", "prod", "-f", "markdown"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "| stack | environment |" in out and "| prod | prod |" in out


def test_validate_reports_invalid_file_and_exits_1(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_stack(repo_copy, "staging", lambda c: c[f"{PROJECT}:serving"]["model"].update(version="latest"))
    assert main(["config", "validate", "--all"]) == EXIT_CHECK_FAILED
    captured = capsys.readouterr()
    assert "3 of 4 stack files valid" in captured.out
    assert "stacks/Pulumi.staging.yaml is invalid" in captured.err
    assert f"{PROJECT}:serving.model.version" in captured.err


def test_unknown_stack_is_bad_input(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", "--env", "prd"]) == EXIT_BAD_INPUT
    assert "unknown stack 'prd'" in capsys.readouterr().err


def test_env_and_all_together_is_bad_input(repo_copy: Path) -> None:
    assert main(["config", "validate", "--env", "dev", "--all"]) == EXIT_BAD_INPUT


def test_bad_format_is_bad_input(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", "--all", "--format", "xml"]) == EXIT_BAD_INPUT
    assert "xml" in capsys.readouterr().err


def test_show_fills_defaults(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--env", "dev"]) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["environment"] == "dev"
    assert data["storage"]["abort_incomplete_upload_days"] == 7, "defaults are shown"


def test_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MLOPS_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["config", "validate", "--all"]) == EXIT_BAD_INPUT
    assert "no Pulumi.yaml" in capsys.readouterr().err

"""`make demo` run again after the template changed: the demo converges to the new layout."""

from __future__ import annotations

from pathlib import Path

import demo
import pytest
from common import git_init, render, run

pytestmark = pytest.mark.slow  # three renders of the template


def test_refresh_removes_what_the_template_no_longer_makes(tmp_path: Path) -> None:
    destination = render(tmp_path / "demo", {})
    # As an older template left it: a module that has since moved, and one the person edited after.
    (destination / "pipelines" / "gitops.py").write_text('"""Moved to pipelines/release/ since."""\n')
    (destination / "pipelines" / "cost_cmd.py").write_text('"""Moved too."""\n')
    git_init(destination, "Initial platform from an older template")
    (destination / "pipelines" / "cost_cmd.py").write_text('"""Moved too, but edited here."""\n')
    cli = destination / "pipelines" / "cli.py"
    cli.write_text("# an older cli\n")

    demo._refresh(destination)

    assert not (destination / "pipelines" / "gitops.py").exists(), "an unchanged leftover is removed"
    assert (destination / "pipelines" / "cost_cmd.py").read_text() == '"""Moved too, but edited here."""\n'
    assert cli.read_text() != "# an older cli\n", "files the template makes are rendered again"
    status = [
        line
        for line in run(["git", "status", "--porcelain"], destination).stdout.splitlines()
        if not line.endswith(".copier-answers.yml")  # the template commit it was rendered from
    ]
    assert sorted(status) == [" D pipelines/gitops.py", " M pipelines/cost_cmd.py"], status

"""copier answers: every question validates, a bad answer is refused with its message and writes nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from common import ROOT, TEMPLATE, render

QUESTIONS = yaml.safe_load((ROOT / "copier.yml").read_text())

BAD_ANSWERS = {
    "slug with spaces": (
        {"project_slug": "Bad Slug"},
        'project_slug "Bad Slug" must start with a lowercase letter',
    ),
    "slug with trailing hyphen": ({"project_slug": "ml-"}, "single hyphens (not at the end)"),
    "slug too long": ({"project_slug": "a" * 30}, "project_slug must be 3 to 24 characters (got 30)"),
    "empty project name": ({"project_name": "  "}, "project_name must not be empty"),
    "unknown aws region": (
        {"clouds": "aws", "aws_region": "mars-east-1"},
        'aws_region "mars-east-1" is not supported',
    ),
    "unknown gcp region": ({"clouds": "gcp", "gcp_region": "moon1"}, 'gcp_region "moon1" is not supported'),
    "bad gcp project id": ({"clouds": "gcp", "gcp_project_prod": "Prod_1"}, "is not a valid GCP project id"),
    "shared gcp project": (
        {
            "clouds": "gcp",
            "gcp_project_dev": "acme-ml",
            "gcp_project_staging": "acme-ml-staging",
            "gcp_project_prod": "acme-ml",
        },
        "gcp_project_prod must differ from gcp_project_dev",
    ),
    "staging shares dev's project": (
        {"clouds": "both", "gcp_project_dev": "acme-ml", "gcp_project_staging": "acme-ml"},
        "gcp_project_staging must differ from gcp_project_dev",
    ),
    "bad billing account": ({"clouds": "both", "gcp_billing_account": "0123-4567"}, "is not a billing account id"),
    "empty github owner": ({"github_owner": ""}, "github_owner must not be empty"),
    "github owner with a slash": (
        {"github_owner": "acme/ml"},
        "not a valid GitHub user or organisation name",
    ),
    "negative budget": (
        {"budget_prod_usd": -100},
        'budget_prod_usd must be a whole number of USD, like 600 (got "-100")',
    ),
    "zero budget": ({"budget_dev_usd": 0}, 'budget_dev_usd must be a whole number of USD, like 600 (got "0")'),
    "non-numeric budget": (
        {"budget_dev_usd": "abc"},
        'budget_dev_usd must be a whole number of USD, like 600 (got "abc")',
    ),
    "fractional budget": ({"budget_staging_usd": "12.5"}, "budget_staging_usd must be a whole number of USD"),
    "budget too large": (
        {"budget_prod_usd": 2_000_000},
        "budget_prod_usd must be between 1 and 1000000 USD (got 2000000)",
    ),
    "gcp project id with google": (
        {"clouds": "gcp", "gcp_project_dev": "google-proj"},
        'gcp_project_dev "google-proj" contains a string GCP reserves',
    ),
    "gcp project id with ssl": (
        {"clouds": "both", "gcp_project_staging": "my-ssl-proj"},
        "contains a string GCP reserves",
    ),
    "bad e-mail": ({"budget_alert_email": "alerts@localhost"}, "is not a valid e-mail address"),
    "bad model name": ({"model_name": "Churn Model"}, 'model_name "Churn Model" must be 1-40 lowercase'),
    "bad cost center": ({"cost_center": "ML Team"}, 'cost_center "ML Team" must be 1-63'),
    "unknown cloud": ({"clouds": "azure"}, "clouds"),
    "unsupported python": ({"python_version": "3.9"}, "python_version"),
}


@pytest.mark.parametrize("case", list(BAD_ANSWERS))
def test_bad_answer_is_refused_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    data, message = BAD_ANSWERS[case]
    destination = tmp_path / "project"
    with pytest.raises(ValueError) as raised:
        render(destination, data)
    assert message in str(raised.value)
    assert not destination.exists(), "a refused answer must not leave files behind"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("budget_staging_usd=-1", 'budget_staging_usd must be a whole number of USD, like 600 (got "-1")'),
        ("budget_dev_usd=abc", 'budget_dev_usd must be a whole number of USD, like 600 (got "abc")'),
    ],
)
def test_copier_cli_shows_the_validator_message(tmp_path: Path, answer: str, message: str) -> None:
    """What a user typing `copier copy --data` sees: the question named with the validator's message (a
    non-numeric budget used to end in `invalid literal for int()`) and a failing exit code."""
    destination = tmp_path / "project"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--defaults",
            "--vcs-ref",
            "HEAD",
            "--data",
            answer,
            ROOT,
            destination,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Validation error for question '{answer.split('=')[0]}'" in output and message in output
    assert "invalid literal" not in output
    assert not destination.exists()


def test_the_readme_copy_command_works_as_written(tmp_path: Path) -> None:
    """The template README's `copier copy` line, run as written (its source replaced by this checkout, as
    its comment allows; `--defaults` because a test cannot answer the questions): copier accepts it."""
    import shlex

    readme = (ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("uvx copier copy "))
    words = shlex.split(line.split("#")[0])
    assert words[:3] == ["uvx", "copier", "copy"], line
    source = next(word for word in words if word.startswith("gh:"))
    args = [str(ROOT) if word == source else word for word in words[3:]]
    result = subprocess.run(
        [sys.executable, "-m", "copier", "copy", *args, "--defaults", "--vcs-ref", "HEAD"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / args[-1] / "Pulumi.yaml").is_file()


def test_every_free_text_question_has_help_placeholder_and_validator() -> None:
    for name, spec in QUESTIONS.items():
        if name.startswith("_") or spec.get("when") is False:
            continue
        assert spec.get("help"), f"{name} has no help"
        if spec.get("type") == "str" and "choices" not in spec:
            assert spec.get("placeholder"), f"{name} has no placeholder"
            assert spec.get("validator"), f"{name} has no validator"
        if spec.get("type") == "int":
            assert spec.get("validator"), f"{name} has no validator"


def test_template_is_safe_to_render_without_trust() -> None:
    for key in ("_tasks", "_migrations", "_jinja_extensions"):
        assert key not in QUESTIONS, f"{key} would force users to pass --trust"


def _regions_in_validator(question: str) -> list[str]:
    match = re.search(r"set supported = \[(.*?)\]", QUESTIONS[question]["validator"])
    assert match, question
    return re.findall(r"'([a-z0-9-]+)'", match.group(1))


def test_offered_regions_match_the_settings_schema() -> None:
    settings = (TEMPLATE / "infra" / "settings" / "base.py").read_text()
    for question, constant in (("aws_region", "AWS_REGIONS"), ("gcp_region", "GCP_REGIONS")):
        regions = _regions_in_validator(question)
        block = re.search(rf"^{constant} = \((.*?)\)$", settings, re.MULTILINE | re.DOTALL)
        assert block, constant
        assert re.findall(r'"([a-z0-9-]+)"', block.group(1)) == regions
        assert QUESTIONS[question]["default"] in regions


def test_each_environment_gets_its_own_valid_gcp_project_by_default(tmp_path: Path) -> None:
    """The defaults are three distinct valid ids even for the longest slug (the id limit is 30)."""
    slug = "a" * 20 + "-bcd"  # 24 characters, the slug's maximum; cut at 21 it would end in a hyphen
    project = render(tmp_path / "project", {"clouds": "gcp", "project_slug": slug})
    found = {}
    for env in ("dev", "staging", "prod"):
        text = (project / "stacks" / f"Pulumi.{env}.yaml").read_text()
        found[env] = re.search(r"^  gcp:project: (\S+)$", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
    assert found == {env: f"{'a' * 20}-{env}" for env in found}
    assert all(len(p) <= 30 for p in found.values())

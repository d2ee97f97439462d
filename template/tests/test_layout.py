"""The layout shows the architecture: packages that say what they hold and may import, modules of a
readable size, and a place in the import layers for every flow."""

from __future__ import annotations

import ast
import tomllib

from tests.conftest import ROOT

CODE = ("core", "infra", "apps", "pipelines", "policies")
MAX_LINES = 400


def packages() -> list[str]:
    return sorted(str(init.parent.relative_to(ROOT)) for top in CODE for init in (ROOT / top).rglob("__init__.py"))


def test_every_package_says_what_it_holds_and_what_it_may_import() -> None:
    flows = {str(p.relative_to(ROOT)) for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    for package in packages():
        docstring = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
        assert docstring, f"{package}/__init__.py has no docstring"
        if package in flows or package in CODE:
            assert "Imports:" in docstring, f"{package}/__init__.py does not say what it may import"


def test_no_module_is_over_the_size_guideline() -> None:
    too_long = {
        str(path.relative_to(ROOT)): n
        for top in CODE
        for path in (ROOT / top).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these by responsibility (at most {MAX_LINES} lines): {too_long}"


def test_every_flow_is_placed_in_the_import_layers() -> None:
    """A new package under pipelines/ must be given its place (import-linter's `exhaustive` also says so)."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers" and c.get("containers") == ["pipelines"]]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    flows = {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert flows | {"cli"} == placed


def test_the_readme_names_every_flow() -> None:
    readme = (ROOT / "README.md").read_text()
    flows = {p.name for p in (ROOT / "pipelines").iterdir() if (p / "__init__.py").is_file()}
    assert {f for f in flows if f"| `{f}/` |" not in readme} == set(), "add the flow to the README's layout table"

"""The model pin of each environment in git: read it at any ref, change its one line, and walk its
history (commit trailers say what each change was).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from core.errors import BadInput
from infra.config import project_name
from pipelines.common.git import TRAILER_KIND, Git, pull_request_of, trailer
from pipelines.config.stackfiles import stack_path

TRAILER_MODEL = "Mlops-Model"


TRAILER_VERSION = "Mlops-Version"


TRAILER_PREVIOUS = "Mlops-Previous-Version"


def pin_in(text: str, source: str, project: str) -> tuple[str, int | None, int]:
    """(model name, pinned version, 0-based line of the version) in a stack file's text."""
    try:
        document = YAML().load(text)
        model = document["config"][f"{project}:serving"]["model"]
    except (YAMLError, KeyError, TypeError) as exc:
        raise BadInput(f"{source}: no {project}:serving.model section ({exc})") from None
    version = model.get("version")
    line, _ = model.lc.value("version")
    return str(model.get("name")), (int(version) if version is not None else None), line


def set_pin(text: str, source: str, project: str, version: int | None) -> str:
    """The stack file's text with only the pinned version changed (and a shadow of that very version
    cleared: it serves now); comments and layout are kept."""
    _, _, line = pin_in(text, source, project)
    lines = text.splitlines(keepends=True)
    match = re.match(r"^(\s*version:\s*)(\S+)(.*)$", lines[line], flags=re.DOTALL)
    if match is None:
        raise BadInput(f"{source} line {line + 1}: expected `version: <n>` for serving.model.version")
    lines[line] = f"{match.group(1)}{'null' if version is None else version}{match.group(3)}"
    changed = "".join(lines)
    if version is not None and shadow_in(text, source, project)[0] == version:
        changed = set_shadow(changed, source, project, None)
    return changed


def _serving(text: str, source: str, project: str) -> Any:
    try:
        return YAML().load(text)["config"][f"{project}:serving"]
    except (YAMLError, KeyError, TypeError) as exc:
        raise BadInput(f"{source}: no {project}:serving section ({exc})") from None


def shadow_in(text: str, source: str, project: str) -> tuple[int | None, float | None, int | None]:
    """(shadow version, its sample_pct, 0-based line of `shadow:`) of a stack file's text (line None: no key)."""
    serving = _serving(text, source, project)
    if "shadow" not in serving:
        return None, None, None
    line, _ = serving.lc.key("shadow")
    shadow = serving.get("shadow")
    if not shadow:
        return None, None, line
    try:
        return int(shadow["version"]), float(shadow.get("sample_pct", 10)), line
    except (KeyError, TypeError, ValueError):
        raise BadInput(
            f"{source} line {line + 1}: serving.shadow must be null or {{version: N, sample_pct: P}}"
        ) from None


def set_shadow(text: str, source: str, project: str, version: int | None, sample_pct: float = 10) -> str:
    """The stack file's text with only `serving.shadow` changed, written on its one line."""
    _, _, line = shadow_in(text, source, project)
    if line is None:
        raise BadInput(
            f"{source}: serving has no `shadow:` key",
            hint="add `shadow: null` under serving (beside model), as the template's stack files have it",
        )
    lines = text.splitlines(keepends=True)
    match = re.match(r"^(\s*shadow:)(\s*)([^#\n]*?)(\s*#.*)?(\n?)$", lines[line], flags=re.DOTALL)
    if match is None:
        raise BadInput(f"{source} line {line + 1}: expected `shadow: null` or `shadow: {{version: …}}` on one line")
    value = "null" if version is None else f"{{version: {version}, sample_pct: {sample_pct:g}}}"
    lines[line] = f"{match.group(1)} {value}{match.group(4) or ''}{match.group(5)}"
    return "".join(lines)


def pin_at(git: Git, ref: str, environment: str) -> int | None:
    """The version `environment` pins at `ref` (None: nothing pinned, or no stack file there)."""
    path = stack_path(git.root, environment)
    text = git.show(ref, path)
    if text is None:
        return None
    return pin_in(text, f"{path} at {ref}", project_name(git.root))[1]


@dataclass(frozen=True)
class PinChange:
    """One commit of the first-parent history that changed an environment's pin."""

    commit: str
    parent: str | None
    environment: str
    before: int | None
    after: int | None
    author: str
    email: str
    date: str
    subject: str
    kind: str  # promotion | rollback | edit

    @property
    def pull_request(self) -> int | None:
        return pull_request_of(self.subject)


def pin_history(git: Git, environment: str, ref: str = "HEAD") -> list[PinChange]:
    """Every change of `environment`'s pin on the first-parent history of `ref`, newest first."""
    path = stack_path(git.root, environment)
    log = git.run("log", "--first-parent", "--format=%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%s%x1f%B%x1e", ref, "--", path)
    changes: list[PinChange] = []
    for record in filter(None, (r.strip("\n") for r in log.split("\x1e"))):
        commit, parents, author, email, date, subject, body = record.split("\x1f")
        parent = parents.split()[0] if parents else None
        after = pin_at(git, commit, environment)
        before = pin_at(git, parent, environment) if parent else None
        if before == after:
            continue
        said = body
        if len(parents.split()) > 1:  # a merged pull request: its branch's last commit says what it is
            said = git.run("log", "-1", "--format=%B", parents.split()[1])
        kind = trailer(said, TRAILER_KIND) or ("rollback" if said.startswith("Revert ") else "edit")
        changes.append(PinChange(commit, parent, environment, before, after, author, email, date, subject, kind))
    return changes

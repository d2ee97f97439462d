"""Load a stack's settings from `stacks/Pulumi.<stack>.yaml` or, inside a Pulumi run, `pulumi.Config`.

Both routes build the same flat mapping of Pulumi config keys (`<project>:serving`, `aws:region`)
and go through `settings_from_config`, so the CLI, CI and `pulumi up` agree on what a file means.
Every problem is reported with the file, the config key path and what was expected.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError

from infra.settings import Environment, Settings

# Provider config keys that the settings read (Pulumi's own convention for regions and projects).
PROVIDER_KEYS: dict[str, tuple[str, str]] = {
    "aws:region": ("aws", "region"),
    "gcp:project": ("gcp", "project"),
    "gcp:region": ("gcp", "region"),
}
PROVIDER_NAMESPACES = {"aws", "gcp", "kubernetes", "pulumi", "random", "tls"}
# Static credentials never belong in a stack file: CI uses OIDC, people use their own login.
AWS_LOGIN = "use GitHub OIDC (CI) or `aws sso login` (people)"
GCP_LOGIN = "use Workload Identity Federation (CI) or `gcloud auth application-default login`"
FORBIDDEN_KEYS = {
    "aws:accessKey": AWS_LOGIN,
    "aws:secretKey": AWS_LOGIN,
    "aws:token": AWS_LOGIN,
    "aws:profile": f"a profile is a person's own setting, not the stack's: {AWS_LOGIN} and set AWS_PROFILE",
    "aws:sharedCredentialsFiles": f"credential files stay on people's machines: {AWS_LOGIN}",
    "aws:sharedCredentialsFile": f"credential files stay on people's machines: {AWS_LOGIN}",
    "aws:sharedConfigFiles": f"config files stay on people's machines: {AWS_LOGIN}",
    "gcp:credentials": GCP_LOGIN,
    "gcp:accessToken": GCP_LOGIN,
    "kubernetes:kubeconfig": "a kubeconfig holds cluster credentials: set `kubernetes:context` and use your own",
}
# Any other provider key whose name says it holds a secret is refused the same way.
SECRET_NAME = re.compile(r"(?i)(secret|token|password|credential|private.?key|access.?key|client.?key|api.?key)")
SAFE_PROVIDER_KEYS = {"aws:skipCredentialsValidation"}
# A stack file is a page of settings; anything this large is a mistake (and would be slow to review).
MAX_STACK_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class Problem:
    key: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.key}{where}: {self.message}"


class SettingsError(ValueError):
    """A stack file that cannot be used; lists every problem with its key path."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} is invalid:\n{lines}")


def find_root(start: Path | None = None) -> Path:
    """The repository root: `$MLOPS_ROOT`, else the nearest parent holding `Pulumi.yaml`."""
    if env_root := os.environ.get("MLOPS_ROOT"):
        return Path(env_root).resolve()
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no Pulumi.yaml in {here} or its parents: run this inside the platform repository")


def project_name(root: Path) -> str:
    path = root / "Pulumi.yaml"
    data = _read_yaml(path)
    name = data.get("name") if isinstance(data, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SettingsError(str(path), [Problem("name", "the Pulumi project needs a name")])
    return name


def stack_file(root: Path, stack: str) -> Path:
    return root / "stacks" / f"Pulumi.{stack}.yaml"


def list_stacks(root: Path) -> list[str]:
    """Stacks that have a file, in promotion order first (local, dev, staging, prod), then by name."""
    found = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in (root / "stacks").glob("Pulumi.*.yaml"))
    order = [e.value for e in Environment]
    return sorted(found, key=lambda s: (order.index(s) if s in order else len(order), s))


def load_stack(root: Path, stack: str) -> Settings:
    """Read and validate `stacks/Pulumi.<stack>.yaml` (outside Pulumi: CLI, CI, tests)."""
    path = stack_file(root, stack)
    source = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    if not path.is_file():
        known = ", ".join(list_stacks(root)) or "none"
        raise SettingsError(source, [Problem("(file)", f"no such stack file; stacks with a file: {known}")])
    size = path.stat().st_size
    if size > MAX_STACK_FILE_BYTES:
        raise SettingsError(
            source,
            [Problem("(file)", f"is {size:,} bytes; a stack file may hold at most {MAX_STACK_FILE_BYTES:,}")],
        )
    document = _read_yaml(path, source)
    if not isinstance(document, Mapping) or not isinstance(document.get("config"), Mapping):
        raise SettingsError(source, [Problem("config", "the file must be a mapping with a `config:` mapping")])
    settings = settings_from_config(document["config"], project_name(root), source, stack=stack)
    check_project_isolation(root, stack, settings, source)
    return settings


def load_from_pulumi() -> Settings:
    """Read the running stack's settings through `pulumi.Config` (inside `pulumi up/preview`)."""
    import pulumi  # noqa: PLC0415 -- the CLI reads files without paying for the SDK import

    project, stack = pulumi.get_project(), pulumi.get_stack()
    project_config = pulumi.Config()
    config: dict[str, Any] = {}
    for field in Settings.model_fields:
        value = project_config.get(field)
        if value is not None:
            config[f"{project}:{field}"] = _decode(value)
    for key in PROVIDER_KEYS:
        namespace, name = key.split(":")
        value = pulumi.Config(namespace).get(name)
        if value is not None:
            config[key] = value
    source = f"stacks/Pulumi.{stack}.yaml"
    settings = settings_from_config(config, project, source, stack=stack)
    check_project_isolation(find_root(), stack, settings, source)
    return settings


def check_project_isolation(root: Path, stack: str, settings: Settings, source: str) -> None:
    """One GCP project per environment. The deploy service account holds project-level roles (GKE, KMS,
    IAM, storage admin), so a project that another environment's stack also names would put that
    environment's clusters, keys and buckets within reach of this one's deploy identity."""
    if settings.gcp is None:
        return
    project = project_name(root)
    for other in list_stacks(root):
        if other == stack:
            continue
        document = _read_yaml(stack_file(root, other))
        config = document.get("config") if isinstance(document, Mapping) else None
        if not isinstance(config, Mapping) or config.get("gcp:project") != settings.gcp.project:
            continue
        environment = config.get(f"{project}:environment")
        if environment != settings.environment.value:
            message = (
                f"{settings.gcp.project} is also the project of the {environment} environment "
                f"(stacks/Pulumi.{other}.yaml): this stack's deploy service account would hold project roles "
                f"over that environment's resources; give each environment its own GCP project"
            )
            raise SettingsError(source, [Problem("gcp:project", message)])


def _decode(value: str) -> Any:
    """The engine hands every value as a string: objects, lists, numbers as JSON; plain strings as they are."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def settings_from_config(config: Mapping[str, Any], project: str, source: str, stack: str | None = None) -> Settings:
    """Turn a flat Pulumi config mapping into validated `Settings`, or raise `SettingsError`."""
    raw: dict[str, Any] = {}
    provider_values: list[tuple[str, Any]] = []
    problems: list[Problem] = []
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if key in FORBIDDEN_KEYS or (
            namespace in PROVIDER_NAMESPACES and SECRET_NAME.search(name) and key not in SAFE_PROVIDER_KEYS
        ):
            reason = FORBIDDEN_KEYS.get(key, "secrets go to the CI's secret store or the cloud's secret manager")
            problems.append(Problem(key, f"credentials are not allowed in stack files; {reason}", _line(config, [key])))
        elif namespace == project and name:
            raw[name] = value
        elif key in PROVIDER_KEYS:
            provider_values.append((key, value))
        elif namespace in PROVIDER_NAMESPACES:
            continue  # other provider settings are Pulumi's business, not ours
        else:
            problems.append(
                Problem(
                    key,
                    f"unknown config key; settings keys are `{project}:<name>` with <name> one of: "
                    f"{', '.join(Settings.model_fields)}",
                    _line(config, [key]),
                )
            )
    if problems:
        raise SettingsError(source, problems)
    for key, value in provider_values:  # merged last so that key order in the file does not matter
        section, field = PROVIDER_KEYS[key]
        current = raw.get(section, {})
        if isinstance(current, Mapping):  # a non-mapping section is left for pydantic to report
            raw[section] = {**current, field: value}
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(source, _problems(exc, config, project)) from None
    if (
        stack is not None
        and stack != settings.environment.value
        and not stack.startswith(f"{settings.environment.value}-")
    ):
        raise SettingsError(
            source,
            [
                Problem(
                    f"{project}:environment",
                    f"is {settings.environment.value!r} but the stack is {stack!r}; "
                    f"a stack named {stack!r} must have environment {stack.split('-')[0]!r}",
                    _line(config, [f"{project}:environment"]),
                )
            ],
        )
    return settings


def _problems(exc: ValidationError, config: Mapping[str, Any], project: str) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if not loc:
            key, rest = f"{project}:(settings)", []
        elif len(loc) >= 2 and f"{loc[0]}:{loc[1]}" in PROVIDER_KEYS:
            key, rest = f"{loc[0]}:{loc[1]}", loc[2:]
        else:
            key, rest = f"{project}:{loc[0]}", loc[1:]
        path = ".".join([key, *rest])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _allowed_hint(loc)
        elif error["type"] == "missing":
            message = "required key is missing"
        elif error["type"] not in {"value_error", "assertion_error"} and not isinstance(
            error.get("input"), dict | list
        ):
            message = f"{message} (got {error.get('input')!r})"
        problems.append(Problem(path, message, _line(config, [key, *rest])))
    return problems


def _allowed_hint(loc: list[str]) -> str:
    """For an unknown key, list the keys that are allowed at that place of the tree."""
    model: Any = Settings
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next((c for c in candidates if hasattr(c, "model_fields")), None)
        if model is None:
            return ""
    return f"; allowed here: {', '.join(model.model_fields)}"


def _line(node: Any, path: list[str]) -> int | None:
    """The 1-based line of the deepest key on `path` that exists in a ruamel document."""
    line = None
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            break
        if hasattr(node, "lc"):
            line = node.lc.key(part)[0] + 1
        node = node[part]
    return line


def _read_yaml(path: Path, source: str | None = None) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return YAML(typ="rt").load(handle)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SettingsError(
            source or str(path), [Problem("(yaml)", f"not valid YAML at {where}: {exc.problem}")]
        ) from None

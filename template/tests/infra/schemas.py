"""Planned resource inputs walked through the installed Pulumi SDKs' typed argument classes: every key at
every depth is an input of its class, every required input is given, every value is of a type the input
accepts, and no deprecated input is used. The engine would report each of these only at `pulumi up`
(a misspelt nested key is silently dropped by a bridged provider).

Custom resources (Prometheus operator, Argo Rollouts, policy-controller) have no typed class: their CRD
schemas check them (`tests/infra/crds.py`).
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import inspect
import re
import sys
import typing
from typing import Any

PACKAGES = {"aws": "pulumi_aws", "gcp": "pulumi_gcp", "random": "pulumi_random", "kubernetes": "pulumi_kubernetes"}
SECRET = "[secret]"  # how the offline plan shows a secret value
DEPRECATION = re.compile(r"if (\w+) is not None:\s*\n\s*warnings\.warn\(\"\"\"(.*?)\"\"\"", re.S)


def args_class(token: str) -> type | None:
    """The typed argument class of a resource type token (None: a custom resource or no SDK class)."""
    package, module, name = token.split(":")
    if package not in PACKAGES:
        return None
    if package == "kubernetes":
        group, version = module.split("/")
        if "." in group and not group.endswith(("k8s.io", "helm.sh")):
            return None
        path = f"{group.split('.')[0]}.{version}"
    else:
        path = "" if module.split("/")[0] == "index" else module.split("/")[0]
    resource = getattr(importlib.import_module(f"{PACKAGES[package]}.{path}".rstrip(".")), name, None)
    if resource is None:
        return None
    namespace = sys.modules[resource.__module__]
    # Where an input type of the same name exists, the generator calls the resource's own `<Name>InitArgs`.
    found = getattr(namespace, f"{name}InitArgs", None) or getattr(namespace, f"{name}Args", None)
    return found if isinstance(found, type) else None


@functools.cache
def fields(cls: type) -> tuple[dict[str, tuple[str, Any]], set[str], dict[str, str]]:
    """(camelCase input → (parameter, type hint)), required parameters, deprecated parameters → message."""
    inputs = {}
    for parameter, prop in vars(cls).items():
        if isinstance(prop, property) and hasattr(prop.fget, "_pulumi_name"):
            inputs[prop.fget._pulumi_name] = (parameter, prop.fget.__annotations__.get("return"))
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    required = {
        name
        for name, p in signature.parameters.items()
        if p.kind is p.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    }
    deprecated = dict(DEPRECATION.findall(inspect.getsource(cls.__init__)))  # type: ignore[misc]
    return inputs, required, deprecated


def _resolve(ref: typing.ForwardRef, owner: type) -> Any:
    try:
        return eval(ref.__forward_arg__, vars(sys.modules[owner.__module__]))
    except (NameError, AttributeError, SyntaxError):
        return None


def _alternatives(hint: Any, owner: type) -> list[Any]:
    """The types an input accepts, without Pulumi's Awaitable/Output wrappers and None."""
    found, pending = [], [hint]
    while pending:
        current = pending.pop()
        if typing.get_origin(current) is typing.Union:
            pending.extend(typing.get_args(current))
        elif typing.get_origin(current) is collections.abc.Awaitable or current is type(None):
            continue
        elif isinstance(current, typing.ForwardRef):
            if not current.__forward_arg__.startswith("Output"):
                resolved = _resolve(current, owner)
                found.append(resolved if resolved is not None else typing.Any)
        else:
            found.append(current)
    return found


def _is_args(kind: Any) -> bool:
    return inspect.isclass(kind) and kind.__name__.endswith("Args")


def _accepts(kinds: list[Any], value: Any) -> bool:
    for kind in kinds:
        origin = typing.get_origin(kind)
        if kind is typing.Any or (origin is None and not inspect.isclass(kind)):
            return True
        if origin is typing.Literal:
            if value in typing.get_args(kind):
                return True
        elif kind is bool:
            if isinstance(value, bool):
                return True
        elif kind is int:
            if not isinstance(value, bool) and (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())
            ):
                return True
        elif kind is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True
        elif kind is str:
            if isinstance(value, str):
                return True
        elif origin in (collections.abc.Sequence, list):
            if isinstance(value, list):
                return True
        elif origin in (collections.abc.Mapping, dict) or _is_args(kind):
            if isinstance(value, dict):
                return True
        elif inspect.isclass(kind) and kind.__module__.startswith("pulumi"):
            return True  # an asset or archive: not walked
    return False


def _walk(value: Any, hint: Any, owner: type, path: str, problems: list[str]) -> None:
    if value is None or hint is None or value == SECRET:
        return
    kinds = _alternatives(hint, owner)
    classes = [k for k in kinds if _is_args(k)]
    sequences = [k for k in kinds if typing.get_origin(k) in (collections.abc.Sequence, list)]
    mappings = [k for k in kinds if typing.get_origin(k) in (collections.abc.Mapping, dict)]
    if isinstance(value, dict) and classes:
        check(classes[0], value, path, problems)
    elif isinstance(value, list) and sequences:
        for index, item in enumerate(value):
            _walk(item, typing.get_args(sequences[0])[0], owner, f"{path}[{index}]", problems)
    elif isinstance(value, dict) and mappings:
        for key, item in value.items():
            _walk(item, typing.get_args(mappings[0])[1], owner, f"{path}.{key}", problems)
    elif not _accepts(kinds, value):
        names = sorted({getattr(k, "__name__", str(k)) for k in kinds})
        problems.append(f"{path}: {value!r} is none of {names}")


def check(cls: type, inputs: dict[str, Any], path: str, problems: list[str]) -> None:
    known, required, deprecated = fields(cls)
    for key, value in inputs.items():
        if key.startswith("__"):
            continue  # the engine's own bookkeeping
        if key not in known:
            problems.append(f"{path}.{key}: {cls.__name__} has no such input")
            continue
        parameter, hint = known[key]
        if parameter in deprecated:
            problems.append(f"{path}.{key}: deprecated ({deprecated[parameter][:100]})")
        _walk(value, hint, cls, f"{path}.{key}", problems)
    given = {known[key][0] for key in inputs if key in known}
    problems.extend(f"{path}: {cls.__name__} requires {parameter}" for parameter in sorted(required - given))


def resource_problems(token: str, name: str, inputs: dict[str, Any]) -> list[str] | None:
    """The problems of one planned resource; None when no typed class describes its type."""
    cls = args_class(token)
    if cls is None:
        return None
    problems: list[str] = []
    check(cls, inputs, name, problems)
    return problems

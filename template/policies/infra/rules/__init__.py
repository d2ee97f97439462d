"""The infrastructure rules, as plain functions over the properties the Pulumi engine hands a pack.

A rule is data (name, description, severity, remediation, the resource types it applies to) plus
one check function that returns the violations it finds. The same `Rule` objects feed the
CrossGuard pack (`policies/infra/__main__.py`, run by `pulumi preview --policy-pack`) and the
offline evaluator (`mlops policy check`), so the two cannot disagree about what a rule says.

Names follow `<provider>-<service>-<resource>-<verb>-<thing>` with verbs disallow/enable/configure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Props = Mapping[str, Any]


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Enforcement(StrEnum):
    ADVISORY = "advisory"
    MANDATORY = "mandatory"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Resource:
    """One resource as a stack policy sees it."""

    type: str
    name: str
    urn: str
    props: Props
    dependencies: tuple[str, ...] = ()
    parent: str | None = None

    def depends_on(self, urn: str) -> bool:
        return urn in self.dependencies or self.parent == urn


@dataclass(frozen=True)
class Context:
    """What a check may know besides the properties: the rule's configuration for this environment,
    and (offline) the plan's cost assumptions; the pack process reads those from the stack file."""

    config: Mapping[str, Any] = field(default_factory=dict)
    assumptions: Mapping[str, Any] | None = None


# A resource check returns violation messages; a stack check returns (urn or None, message) pairs.
ResourceCheck = Callable[[Props, Context], Iterable[str]]
StackCheck = Callable[[list[Resource], Context], Iterable[tuple[str | None, str]]]


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    severity: Severity
    remediation: str
    resource_types: tuple[str, ...] = ()
    check: ResourceCheck | None = None
    stack_check: StackCheck | None = None
    enforcement: Enforcement = Enforcement.MANDATORY
    config_defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = self.name.split("-")
        if len(parts) < 5 or not any(verb in parts for verb in ("disallow", "enable", "configure")):
            raise ValueError(f"rule name {self.name!r} must be <provider>-<service>-<resource>-<verb>-<thing>")
        if (self.check is None) == (self.stack_check is None):
            raise ValueError(f"rule {self.name}: give exactly one of check (resource rule) or stack_check")
        if self.check is not None and not self.resource_types:
            raise ValueError(f"rule {self.name}: a resource rule names the resource types it applies to")

    @property
    def is_stack_rule(self) -> bool:
        return self.stack_check is not None

    def applies_to(self, resource_type: str) -> bool:
        return resource_type in self.resource_types


def dig(props: Props | None, *path: str | int) -> Any:
    """`props[a][b][0]…`, or None where any step is missing (a missing property is not a crash)."""
    value: Any = props
    for step in path:
        if isinstance(step, int):
            if not _is_sequence(value) or len(value) <= step:
                return None
        elif not isinstance(value, Mapping):
            return None
        value = value[step] if isinstance(step, int) else value.get(step)
    return value


def _is_sequence(value: Any) -> bool:
    # The engine hands a pack read-only proxies (Mapping / Sequence), not dicts and lists.
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if _is_sequence(value) else [value]

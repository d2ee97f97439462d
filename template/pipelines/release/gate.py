"""`mlops gate`: the decision on a pull request that changes an environment's desired state.

It compares the base and the head of the pull request: the model pin (a promotion or a rollback,
checked against the promotion policy with the source registry's evidence), and the infrastructure
(the offline plan of the environment at both ends, the policy pack on the head, the cost change).
Every check lands in one Markdown report a reviewer can decide from; the exit code is the verdict.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import BadInput
from infra.config import project_name, stack_file
from pipelines.common.git import Git
from pipelines.config.stackfiles import stack_path
from pipelines.promotion.registries import source_of
from pipelines.release.pins import pin_at, pin_history, pin_in, set_pin, shadow_in
from policies.models import POLICY_DIR, PolicyError, load_policy

if TYPE_CHECKING:
    from infra.pricing.estimate import CostChange
    from pipelines.plan.graph import Plan
    from pipelines.plan.policy import PolicyReport

METRICS = ("roc_auc", "accuracy", "f1")
INFRA_PATHS = ("infra/", "policies/infra/", "Pulumi.yaml")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class ModelChange:
    model: str
    before: int | None
    after: int | None
    kind: str  # promotion | rollback | unpin | shadow
    source: str | None
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    # What `after` did as the environment's shadow beside `before` (the prod gate's evidence).
    shadow: dict[str, Any] | None = None


@dataclass
class ResourceDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class GateReport:
    environment: str
    base: str
    head: str
    checks: list[Check] = field(default_factory=list)
    model: ModelChange | None = None
    settings_changed: bool = False
    infra_changed: bool = False
    policy: PolicyReport | None = None
    cost: CostChange | None = None
    resources: ResourceDiff | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "base": self.base,
            "head": self.head,
            "passed": self.passed,
            "checks": [c.__dict__ for c in self.checks],
            "model": None if self.model is None else {**self.model.__dict__, "metrics": self.model.metrics},
            "settings_changed": self.settings_changed,
            "infra_changed": self.infra_changed,
            "policy": self.policy.to_json() if self.policy else None,
            "cost": self.cost.to_json() if self.cost else None,
            "resources": None if self.resources is None else self.resources.__dict__,
            "seconds": self.seconds,
        }


def _diff(before: Plan | None, after: Plan) -> ResourceDiff:
    old = {r.urn: r for r in (before.resources if before else []) if r.custom}
    new = {r.urn: r for r in after.resources if r.custom}
    diff = ResourceDiff(
        added=sorted(f"{r.type} {r.name}" for urn, r in new.items() if urn not in old),
        removed=sorted(f"{r.type} {r.name}" for urn, r in old.items() if urn not in new),
    )
    for urn, resource in new.items():
        if urn in old and old[urn].inputs != resource.inputs:
            inputs = old[urn].inputs
            keys = sorted(k for k in {*resource.inputs, *inputs} if resource.inputs.get(k) != inputs.get(k))
            diff.changed.append((f"{resource.type} {resource.name}", keys))
    return diff


def affected(root: Path, environment: str, base: str) -> bool:
    """Whether the change since `base` concerns `environment`: its stack file, its model policy, or the
    program and policy pack every environment shares. A base of zeros (a new branch) concerns all."""
    source_of(environment, "gate changes of")
    if set(base) == {"0"}:
        return True
    git = Git(root)
    git.require_repository()
    changed = git.run("diff", "--name-only", git.commit_of(base), "HEAD").splitlines()
    own = {stack_path(root, environment), f"policies/models/{environment}.yaml"}
    return any(path in own or path.startswith(INFRA_PATHS) for path in changed)


def gate(
    root: Path,
    environment: str,
    base: str,
    *,
    policy_dir: Path | None = None,
    record: bool = False,
    progress: Any = None,
) -> GateReport:
    """Decide the change between `base` and HEAD for `environment`.

    The model checks (MLflow's import, registry reads, one artifact download) run in a forked
    process while this one plans the environment at both ends; with both clouds the plans' GCP
    shards run in a second one (two cores: about the longest of the three)."""
    started = time.perf_counter()
    say = progress or (lambda _message: None)
    source_of(environment, "gate changes of")  # BadInput outside dev → staging → prod
    git = Git(root)
    git.require_repository()
    base_commit = git.commit_of(base)
    head = git.commit_of("HEAD")
    report = GateReport(environment, base_commit, head)
    up_to_date = git.ok("merge-base", "--is-ancestor", base_commit, head)
    report.checks.append(
        Check(
            "branch contains the base",
            up_to_date,
            f"HEAD contains {base}"
            if up_to_date
            else f"{base} moved on since this branch: rebase it and run again "
            "(another change of the environment may have merged first)",
        )
    )
    changed = git.run("diff", "--name-only", base_commit, head).splitlines()
    path = stack_path(root, environment)
    project = project_name(root)
    report.infra_changed = any(p.startswith(INFRA_PATHS) for p in changed)
    if path in changed:
        before_text = git.show(base_commit, path)
        after_text = git.show(head, path) or ""
        before_pin = pin_in(before_text, path, project)[1] if before_text else None
        model, after_pin, _ = pin_in(after_text, path, project)
        before_shadow = shadow_in(before_text, path, project)[0] if before_text else None
        after_shadow = shadow_in(after_text, path, project)[0]
        report.settings_changed = before_text is None or set_pin(before_text, path, project, after_pin) != after_text
        if before_pin != after_pin:
            say(f"model pin of {environment}: {before_pin} → {after_pin}")
            report.model = ModelChange(model, before_pin, after_pin, "promotion", source_of(environment))
        elif after_shadow is not None and after_shadow != before_shadow:
            say(f"shadow of {environment}: {before_shadow} → {after_shadow} (beside {after_pin})")
            report.model = ModelChange(model, after_pin, after_shadow, "shadow", source_of(environment))
    if report.model is None and not report.settings_changed and not report.infra_changed:
        report.checks.append(Check("something to decide", True, f"this change does not touch {environment}"))
    # The model policies of the change under review: a PR may tighten them, and is judged by them.
    repository_policies = root / "policies" / "models"
    policy_dir = policy_dir or (repository_policies if repository_policies.is_dir() else POLICY_DIR)
    model_part = None
    with ExitStack() as stack:
        if report.model is not None:
            pool = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
            )
            model_part = pool.submit(_model_part, root, environment, base_commit, report.model, policy_dir, record)
        _infra_checks(report, root, environment, base_commit, say)
        if model_part is not None:
            report.model, checks = model_part.result()
            report.checks[1:1] = checks
    report.seconds = round(time.perf_counter() - started, 2)
    return report


def _model_part(  # noqa: PLR0917 -- submitted to a process pool, which passes positionals
    root: Path, environment: str, base: str, change: ModelChange, policy_dir: Path | None, record: bool
) -> tuple[ModelChange, list[Check]]:
    """The model change's checks: a promotion against the policy with the source registry's evidence,
    or a rollback to a version this environment served before."""
    from core.registry import client_for, find_by_model_version, guarded, registered_model_exists, registered_name  # noqa: PLC0415
    from pipelines.promotion.registries import judge, record_decision  # noqa: PLC0415
    from pipelines.release.promote import configured_registries  # noqa: PLC0415

    git = Git(root)
    checks: list[Check] = []
    model, before, after, source = change.model, change.before, change.after, change.source
    if after is None:
        change.kind = "unpin"
        return change, [Check("pin names a version", False, f"the pin of {environment} is set to null")]
    history = pin_history(git, environment, base)
    known = {c.after for c in history} | {c.before for c in history}
    if change.kind != "shadow" and after in known and (before is None or after < before):
        change.kind = "rollback"
    registries = configured_registries(root)
    evidence_env = environment if change.kind == "rollback" else source or environment
    uri = registries.uri(evidence_env)
    name = registered_name(evidence_env, model)
    with guarded(f"reading {name}", uri):
        client = client_for(uri)
        candidate = find_by_model_version(client, name, after) if registered_model_exists(client, name) else None
        if candidate is None:
            return change, [Check("version is in the registry", False, f"{model} v{after} is not in {name} at {uri}")]
        change.metrics[after] = {m: round(v, 4) for m, v in candidate.metrics.items() if m in METRICS}
        previous = find_by_model_version(client, name, before) if before else None
        if before is not None and previous is not None:
            change.metrics[before] = {m: round(v, 4) for m, v in previous.metrics.items() if m in METRICS}
        if change.kind == "rollback":
            detail = f"{environment} served version {after} before; rolling back from {before}"
            return change, [Check("rollback", True, detail)]
        try:
            policy = load_policy(environment, policy_dir or POLICY_DIR)
        except PolicyError as exc:
            raise BadInput(str(exc)) from None
        seen = None
        if change.kind == "shadow":  # it is about to gather the evidence: every other rule applies
            policy = policy.without_shadow()
        elif policy.shadow is not None and before is not None:
            seen = _shadow_evidence(root, environment, model, before, after, policy.shadow.window_hours)
            change.shadow = seen.as_dict() if seen is not None else None
        verdict = judge(
            policy,
            uri,
            model,
            candidate,
            pin_at(git, "HEAD", source) if source else None,
            served_version=before,
            shadow=seen,
        )
        if record:
            record_decision(client, candidate, verdict, "mlops gate")
    checks += [Check(f"model policy: {r.rule}", r.passed, r.detail) for r in verdict.rules]
    return change, checks


def _shadow_evidence(  # noqa: PLR0917 -- the pair, where, and how far back
    root: Path, environment: str, model: str, champion: int, candidate: int, window_hours: int
) -> Any:
    """From the environment's Prometheus (`MLOPS_PROMETHEUS_<ENV>`), or from local serving's /metrics
    when this checkout's registries are the local environment's (local serving is prod's)."""
    import os  # noqa: PLC0415

    from core.registry import registered_name  # noqa: PLC0415
    from pipelines.promotion.evidence import shadow_evidence  # noqa: PLC0415

    serving_url = None
    if environment == "prod" and not os.environ.get("MLOPS_REGISTRY_PROD"):
        from pipelines.release.promote import local_environment  # noqa: PLC0415

        serving = local_environment(root).running().get("serving")
        serving_url = serving.url if serving is not None else None
    name = registered_name(environment, model)
    return shadow_evidence(environment, name, champion, candidate, window_hours, serving_url=serving_url)


def _infra_checks(report: GateReport, root: Path, environment: str, base: str, say: Any) -> None:
    """Plan the environment at HEAD and at the base, check the head against the pack, price both."""
    from infra.pricing.assumptions import Assumptions  # noqa: PLC0415
    from infra.pricing.estimate import CostChange, estimate  # noqa: PLC0415
    from pipelines.plan.at_ref import plans_at, tree_at  # noqa: PLC0415
    from pipelines.plan.graph import PlanError  # noqa: PLC0415
    from pipelines.plan.offline import plan_targets  # noqa: PLC0415
    from pipelines.plan.policy import check_plan, engine_resources  # noqa: PLC0415

    try:
        if report.infra_changed:  # the base is planned with the base's own program
            (head_plan,) = plan_targets([(root, environment)], progress=say)
            base_plan = plans_at(root, base, [environment], progress=say)[environment]
        else:  # the same program: both ends in one go
            with tree_at(root, base) as tree:
                targets = [(root, environment)]
                if stack_file(tree, environment).is_file():
                    targets.append((tree, environment))
                plans = plan_targets(targets, progress=say)
            head_plan, base_plan = plans[0], (plans[1] if len(plans) > 1 else None)
    except PlanError as exc:
        report.checks.append(Check("plan", False, str(exc)))
        return
    report.resources = _diff(base_plan, head_plan)
    report.policy = check_plan(head_plan)
    mandatory = report.policy.mandatory
    report.checks.append(
        Check(
            "infrastructure policy",
            not mandatory,
            f"{len(mandatory)} mandatory, {len(report.policy.violations) - len(mandatory)} advisory violations "
            f"({report.policy.rules} rules, {report.policy.resources} resources)",
        )
    )

    def priced(plan: Plan) -> Any:
        return estimate(plan.stack, engine_resources(plan), Assumptions.model_validate(plan.assumptions))

    report.cost = CostChange(environment, priced(base_plan) if base_plan else None, priced(head_plan))


def markdown(report: GateReport) -> str:
    verdict = "passed ✅" if report.passed else "**failed** ❌"
    lines = [f"## Gate for `{report.environment}`: {verdict}", ""]
    lines += [f"Base `{report.base[:10]}` → head `{report.head[:10]}`, decided in {report.seconds:.1f} s.", ""]
    if report.model is not None:
        m = report.model
        lines += [f"### Model: {m.model} v{m.before or '—'} → v{m.after or '—'} ({m.kind})", ""]
        versions = [v for v in (m.before, m.after) if v is not None and v in m.metrics]
        if versions:
            heads = [f"v{v}" + (" (serving)" if v == m.before else " (candidate)") for v in versions]
            lines += ["| metric | " + " | ".join(heads) + " |"]
            lines += ["| --- |" + " --- |" * len(versions)]
            for metric in METRICS:
                lines.append(f"| {metric} | " + " | ".join(str(m.metrics[v].get(metric, "—")) for v in versions) + " |")
            lines.append("")
        if m.shadow is not None:
            s = m.shadow
            agreement = s["agreement"] if s["agreement"] is not None else "—"
            p95 = f"{s['p95_ms']} ms" if s["p95_ms"] is not None else "—"
            lines += [
                f"Shadow evidence: v{s['candidate_version']} beside v{s['champion_version']} on this environment's "
                f"requests (`{s['source']}`)",
                "",
                "| requests scored | rows | agreement | candidate p95 | dropped | failed |",
                "| --- | --- | --- | --- | --- | --- |",
                f"| {s['requests']:g} | {s['rows']:g} | {agreement} | {p95} | {s['dropped']:g} | {s['failed']:g} |",
                "",
            ]
    lines += ["### Checks", "", "| check | result | detail |", "| --- | --- | --- |"]
    lines += [f"| {c.name} | {'✅' if c.passed else '❌'} | {c.detail.replace('|', '/')} |" for c in report.checks]
    lines.append("")
    if report.policy is not None and report.policy.violations:
        lines += ["### Policy violations", "", "| enforcement | policy | resource | message |"]
        lines += ["| --- | --- | --- | --- |"]
        lines += [
            f"| {v.enforcement} | {v.policy} | {v.resource_name or '(stack)'} | {v.message.replace('|', '/')} |"
            for v in report.policy.violations
        ]
        lines.append("")
    if report.resources is not None:
        r = report.resources
        lines += [
            f"### Resources: {len(r.added)} to add, {len(r.changed)} to change, {len(r.removed)} to remove",
            "",
        ]
        for title, items in (("add", r.added), ("remove", r.removed)):
            lines += [f"- {title}: `{item}`" for item in items[:20]]
        lines += [f"- change: `{name}` ({', '.join(keys)})" for name, keys in r.changed[:20]]
        lines.append("")
    if report.cost is not None:
        c = report.cost
        before = f"{c.before_usd:,.2f}" if c.before else "—"
        budget = c.after.assumptions.budget_usd
        lines += [
            "### Cost (USD per month, list prices)",
            "",
            f"{before} → {c.after.monthly_usd:,.2f} ({c.delta_usd:+,.2f})"
            + (f"; budget {budget:,.0f} ({c.after.budget_used_pct} % used)" if budget else ""),
        ]
        lines += [f"- `{x.key}`: {x.before_usd:,.2f} → {x.after_usd:,.2f}" for x in c.changes()[:10]]
        lines.append("")
    return "\n".join(lines)

"""`mlops policy check`: the infrastructure policy pack, offline, on the planned stacks."""

from __future__ import annotations

import sys
import time

import typer

from core.errors import CheckFailed
from pipelines.common.options import AllOption, EnvOption, FormatOption
from pipelines.common.output import OutputFormat, Report, emit, markdown_table, progress
from pipelines.plan.commands import SerialOption, planned_stacks

app = typer.Typer(
    help="Policy-as-code for the infrastructure (the CrossGuard pack in policies/infra).", no_args_is_help=True
)


@app.command("check")
def check(
    envs: EnvOption = None,
    all_stacks: AllOption = False,
    fmt: FormatOption = OutputFormat.TABLE,
    serial: SerialOption = False,
) -> None:
    """Plan the stacks offline and evaluate every rule of the pack; exit 1 on any mandatory violation."""
    started = time.perf_counter()
    plans = planned_stacks(envs, all_stacks, serial)
    from pipelines.plan.policy import check_plan  # noqa: PLC0415 -- loads pulumi_policy, only this command needs it

    checked = time.perf_counter()
    reports = [check_plan(plan) for plan in plans]
    elapsed = time.perf_counter() - checked
    rows = [
        [r.stack, v.enforcement, v.severity, v.policy, v.resource_name or "(stack)", v.message]
        for r in reports
        for v in sorted(r.violations, key=lambda v: (v.enforcement != "mandatory", v.policy))
    ]
    summary = "; ".join(
        f"{r.stack}: {len(r.mandatory)} mandatory, {len(r.violations) - len(r.mandatory)} advisory "
        f"({r.rules} rules, {r.resources} resources)"
        for r in reports
    )
    report = Report(
        title="Policy violations",
        columns=["stack", "enforcement", "severity", "policy", "resource", "message"],
        rows=rows,
        data={"reports": [r.to_json() for r in reports], "seconds": round(elapsed, 3)},
        footer=summary,
    )
    if fmt is OutputFormat.MARKDOWN:
        verdict = "passed" if not any(r.mandatory for r in reports) else "**failed**"
        sys.stdout.write(f"Policy check {verdict}: {summary}\n\n{markdown_table(report)}\n")
    else:
        emit(report, fmt)
    progress(
        f"policy check of {len(reports)} stack(s) in {elapsed:.2f} s after planning "
        f"({time.perf_counter() - started:.1f} s in all)"
    )
    failing = [r for r in reports if r.mandatory]
    if failing:
        raise CheckFailed(
            f"mandatory policy violations in {', '.join(r.stack for r in failing)}",
            hint="each row names the policy and the resource; the remediation is in the policy's description "
            "(`mlops policy list`)",
        )


@app.command("list")
def list_rules(
    fmt: FormatOption = OutputFormat.TABLE,
    env: str | None = typer.Option(None, "--env", "-e", help="Show this environment's enforcement."),
) -> None:
    """Every rule of the pack: name, severity, enforcement, why, and how to fix."""
    from policies.infra.pack import RULES, enforcement, environment_config  # noqa: PLC0415

    config = environment_config(env) if env else {}
    emit(
        Report(
            title="Infrastructure policies" + (f" ({env})" if env else ""),
            columns=["policy", "kind", "severity", "enforcement", "why", "remediation"],
            rows=[
                [
                    r.name,
                    "stack" if r.is_stack_rule else "resource",
                    r.severity.value,
                    enforcement(r, config).value,
                    r.description,
                    r.remediation,
                ]
                for r in RULES
            ],
            footer=f"{len(RULES)} rules",
        ),
        fmt,
    )

"""`mlops cost`: each stack's monthly estimate from its offline plan, and what a change does to it."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipelines.common.options import AllOption, EnvOption, FormatOption, repo_root
from pipelines.common.output import OutputFormat, Report, emit, markdown_table, progress
from pipelines.plan.commands import SerialOption, planned_stacks

if TYPE_CHECKING:
    from infra.pricing.estimate import CostChange
    from infra.pricing.lines import Estimate
    from infra.pricing.table import PriceTable

CompareOption = Annotated[
    str | None,
    typer.Option("--compare", metavar="REF", help="Also estimate the stacks as of this git ref and show the change."),
]


def usd(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def cost(
    envs: EnvOption = None,
    all_stacks: AllOption = False,
    fmt: FormatOption = OutputFormat.TABLE,
    compare: CompareOption = None,
    serial: SerialOption = False,
) -> None:
    """Estimate each stack's monthly cost (list prices, stated assumptions) and its saving over all on-demand."""
    started = time.perf_counter()
    root = repo_root()
    if compare is not None:
        from pipelines.plan.at_ref import resolve  # noqa: PLC0415

        resolve(root, compare)  # a bad ref fails before seconds of planning
    plans = planned_stacks(envs, all_stacks, serial)
    # Imported after planning: the estimate reads the properties the way the policy pack does.
    from infra.pricing.assumptions import Assumptions  # noqa: PLC0415
    from infra.pricing.estimate import CostChange, estimate  # noqa: PLC0415
    from infra.pricing.table import shipped_prices  # noqa: PLC0415
    from pipelines.plan.policy import engine_resources  # noqa: PLC0415

    table = shipped_prices()
    estimates = [estimate(p.stack, engine_resources(p), Assumptions.model_validate(p.assumptions)) for p in plans]
    changes: list[CostChange] | None = None
    if compare is not None:
        from pipelines.plan.at_ref import plans_at  # noqa: PLC0415

        before = plans_at(root, compare, [p.stack for p in plans], parallel=not serial, progress=progress)
        changes = []
        for after in estimates:
            base = before[after.stack]
            changes.append(
                CostChange(
                    after.stack,
                    estimate(base.stack, engine_resources(base), Assumptions.model_validate(base.assumptions))
                    if base
                    else None,
                    after,
                )
            )
    elapsed = time.perf_counter() - started
    if fmt is OutputFormat.JSON:
        data: dict[str, Any] = {"estimates": [e.to_json() for e in estimates], "prices": _prices_meta(table)}
        if changes is not None:
            data["compare"] = {"ref": compare, "stacks": [c.to_json() for c in changes]}
        data["seconds"] = round(elapsed, 2)
        emit(Report(title="cost", columns=[], data=data), fmt)
    elif fmt is OutputFormat.MARKDOWN:
        sys.stdout.write(markdown(estimates, changes, compare, table))
    else:
        for item in estimates:
            emit(lines_report(item), fmt)
            if item.unpriced:
                emit(unpriced_report(item), fmt)
        emit(summary_report(estimates, table), fmt)
        if changes is not None:
            emit(compare_report(changes, compare or ""), fmt)
    progress(f"estimated {len(estimates)} stack(s) in {elapsed:.1f} s; {savings_sentence(estimates)}")


def _prices_meta(table: PriceTable) -> dict[str, Any]:
    from infra.pricing.table import PRICES_FILE  # noqa: PLC0415

    dates = sorted(
        {str(p.as_of) for cloud in (table.aws, table.gcp) for p in cloud.prices.values()}
        | {str(cloud.instances_as_of) for cloud in (table.aws, table.gcp)}
    )
    return {"file": f"pipelines/{PRICES_FILE.name}", "as_of": [dates[0], dates[-1]], "currency": table.currency}


def lines_report(item: Estimate) -> Report:
    lines = sorted(item.lines, key=lambda line: (line.cloud, -line.monthly_usd))
    budget = item.assumptions.budget_usd
    footer = [
        f"total {usd(item.monthly_usd)} USD/month"
        + (f" = {item.budget_used_pct} % of the budget of {usd(budget)}" if budget else "")
        + f"; {len(item.unpriced)} unpriced; {sum(item.no_charge.values())} resources with no charge of their own",
        *(f"assumed: {said}" for said in item.assumptions.describe()),
    ]
    return Report(
        title=f"Monthly cost of stack {item.stack} ({item.environment}), USD",
        columns=["cloud", "resource", "item", "quantity", "unit price", "monthly", "all on-demand"],
        rows=[
            [
                line.cloud,
                line.resource,
                line.item,
                f"{line.quantity:,.2f} {line.unit}",
                f"{line.unit_usd:.6g}",
                usd(line.monthly_usd),
                usd(line.baseline_usd),
            ]
            for line in lines
        ],
        footer="\n".join(footer),
    )


def unpriced_report(item: Estimate) -> Report:
    return Report(
        title=f"{item.stack}: UNPRICED (not in the total)",
        columns=["resource", "type", "why"],
        rows=[[u.resource, u.type, u.reason] for u in item.unpriced],
    )


def summary_notes(estimates: list[Estimate], table: PriceTable) -> list[str]:
    meta = _prices_meta(table)
    return [
        *(savings_line(e) for e in estimates if e.baseline_usd),
        f"list prices from {meta['file']} (as of {' to '.join(dict.fromkeys(meta['as_of']))}); "
        "all on-demand = the same capacity on-demand, always on, every byte in the standard class",
    ]


def summary_report(estimates: list[Estimate], table: PriceTable, *, notes: bool = True) -> Report:
    return Report(
        title="Estimated monthly cost per stack, USD",
        columns=["stack", "estimate", "budget", "of budget", "all on-demand", "saving", "unpriced"],
        rows=[
            [
                e.stack,
                usd(e.monthly_usd),
                usd(e.assumptions.budget_usd),
                f"{e.budget_used_pct} %" if e.budget_used_pct is not None else None,
                usd(e.baseline_usd),
                f"{e.savings_pct} %" if e.baseline_usd else None,
                len(e.unpriced),
            ]
            for e in estimates
        ],
        footer="\n".join(summary_notes(estimates, table)) if notes else None,
    )


def savings_line(item: Estimate) -> str:
    parts = ", ".join(f"{kind} {usd(amount)}" for kind, amount in item.savings.items() if amount)
    return (
        f"{item.stack}: {usd(item.monthly_usd)} vs {usd(item.baseline_usd)} all on-demand "
        f"({item.savings_pct} % less{': ' + parts if parts else ''})"
    )


def savings_sentence(estimates: list[Estimate]) -> str:
    over = [e.stack for e in estimates if e.budget_used_pct is not None and e.budget_used_pct > 100]
    total = sum(e.monthly_usd for e in estimates)
    unpriced = sum(len(e.unpriced) for e in estimates)
    text = f"{usd(total)} USD/month in all, {unpriced} resource(s) unpriced"
    return text + (f"; OVER BUDGET: {', '.join(over)}" if over else "; every stack within its budget")


def compare_report(changes: list[CostChange], ref: str) -> Report:
    rows: list[list[Any]] = []
    for change in changes:
        pct = f"{change.delta_pct:+} %" if change.delta_pct is not None else "new stack"
        total = [usd(change.before_usd), usd(change.after.monthly_usd), f"{change.delta_usd:+,.2f}", pct]
        rows.append([change.stack, "(total)", *total])
        rows += [
            [change.stack, c.key, usd(c.before_usd), usd(c.after_usd), f"{c.delta_usd:+,.2f}", ""]
            for c in change.changes()[:10]
        ]
    return Report(
        title=f"Cost change against {ref}, USD per month",
        columns=["stack", "line", f"at {ref}", "now", "change", "change %"],
        rows=rows,
    )


def markdown(estimates: list[Estimate], changes: list[CostChange] | None, ref: str | None, table: PriceTable) -> str:
    """One PR comment: the summary and savings, the change against the base, the lines folded away."""
    parts = [
        f"**Cost estimate:** {savings_sentence(estimates)}.",
        markdown_table(summary_report(estimates, table, notes=False)),
        "\n".join(f"- {note}" for note in summary_notes(estimates, table)),
    ]
    if changes is not None:
        parts.append(markdown_table(compare_report(changes, ref or "")))
    for item in estimates:
        if item.unpriced:
            parts.append(markdown_table(unpriced_report(item)))
        lines = lines_report(item)
        lines.footer = "\n".join(f"- {note}" for note in (lines.footer or "").splitlines())
        parts.append(
            f"<details><summary>{item.stack}: {len(item.lines)} priced lines</summary>\n\n"
            f"{markdown_table(lines)}\n\n</details>"
        )
    return "\n\n".join(parts) + "\n"

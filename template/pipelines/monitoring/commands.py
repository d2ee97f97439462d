"""`mlops drift --env ENV`: has what an environment serves drifted from its training data?

The serving app keeps a uniform sample of recent inputs (`POST /monitoring/sample`); the training
reference travels in the served version's artifacts (`drift_reference.npz`). This command fetches
both, compares them feature by feature (`apps/serving/drift.py`: KS test and PSI) and reports.

    mlops drift --env local                        # the local environment (`mlops local up`)
    mlops drift --env prod --serving-url URL       # or MLOPS_SERVING_PROD; registry: MLOPS_REGISTRY_PROD
    mlops drift --env prod --record --retrain      # log a drift run; past the threshold, train a new
                                                   # dev candidate (it then goes through the promotion gates)

Exit status: 0, or 1 with `--fail-on-drift` when the sample drifted.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from core.errors import EXIT_CHECK_FAILED, BadInput
from pipelines.common.options import FormatOption, repo_root
from pipelines.common.output import OutputFormat, Report, console, emit
from pipelines.monitoring.drift import check, record, retrain


def drift(
    env: Annotated[str, typer.Option("--env", "-e", help="Environment: local, dev, staging or prod.")],
    *,
    serving_url: Annotated[str | None, typer.Option(help="The serving app (default MLOPS_SERVING_<ENV>).")] = None,
    registry_uri: Annotated[
        str | None, typer.Option(help="The environment's MLflow (default MLOPS_REGISTRY_<ENV>).")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(help="KS p-value below which a feature drifted (stack default).")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Share of drifted features that is drift (stack default).")
    ] = None,
    record_run: Annotated[
        bool, typer.Option("--record", help="Log the check as a run in the `drift` experiment.")
    ] = False,
    retrain_on_drift: Annotated[bool, typer.Option("--retrain", help="On drift, train a new dev candidate.")] = False,
    open_pr: Annotated[
        bool, typer.Option("--open-pr", help="With --retrain: open the pull request that pins the candidate in dev.")
    ] = False,
    fail_on_drift: Annotated[bool, typer.Option("--fail-on-drift", help="Exit 1 when the sample drifted.")] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Compare the inputs ENV has served with the served version's training data, feature by feature."""
    root = repo_root()
    result = check(root, env, serving_url=serving_url, registry_uri=registry_uri, alpha=alpha, threshold=threshold)
    report = result.report
    if record_run:
        result.recorded_run = record(result)
    if open_pr and not retrain_on_drift:
        raise BadInput("--open-pr needs --retrain (it opens the pull request for the retrained version)")
    if retrain_on_drift and report.drifted:
        result.retrained_version = retrain(root, result)
        if open_pr:
            from pipelines.release.promote import request_promotion  # noqa: PLC0415

            opened = request_promotion(root, str(result.retrained_model), result.retrained_version, "dev")
            result.next_steps = [f"review and merge {opened.pull_request or opened.branch} (pins it in dev)"]
    verdict = (
        f"not enough data: {report.sample_rows} rows sampled, at least 50 needed"
        if not report.enough_data
        else f"{'DRIFT' if report.drifted else 'no drift'}: {len(report.drifted_features)} of {len(report.features)} "
        f"features ({report.share:.0%}; threshold {report.threshold:.0%}, KS p < {report.alpha:g})"
    )
    footer = [
        f"{result.model['name']} v{result.model['model_version']} in {env}: {verdict}; "
        f"{report.sample_rows} sampled rows vs {report.reference_rows} reference rows"
    ]
    if result.recorded_run:
        footer.append(f"recorded as run {result.recorded_run} (experiment `drift`)")
    if result.retrained_version is not None:
        footer.append(f"trained dev candidate version {result.retrained_version}")
    footer += [f"next: {step}" for step in result.next_steps]
    rows = [
        [
            f.feature,
            f"{f.ks_statistic:.3f}",
            f"{f.p_value:.2g}",
            f"{f.psi:.3f}",
            f"{f.reference_mean:.4g}",
            f"{f.current_mean:.4g}",
            "DRIFT" if f.drifted else "ok",
        ]
        for f in sorted(report.features, key=lambda f: f.p_value)
    ]
    title = f"Input drift: {env}"
    columns = ["feature", "KS", "p-value", "PSI", "reference mean", "served mean", "verdict"]
    if fmt is OutputFormat.TABLE:
        emit(Report(title, columns, rows), fmt)
        for line in footer:
            console.print(line)
    elif fmt is OutputFormat.MARKDOWN:
        sys.stdout.write(f"### {title}\n\n" + "\n".join(footer) + "\n\n")
        emit(Report(title, columns, rows), fmt)
    else:
        emit(Report(title, columns, data=result.as_dict()), fmt)
    if fail_on_drift and report.drifted:
        raise typer.Exit(EXIT_CHECK_FAILED)

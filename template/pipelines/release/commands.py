"""`mlops promote | gate | sync | rollback | report`: model releases by pull request."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from core.errors import CheckFailed
from pipelines.common.options import FormatOption, repo_root
from pipelines.common.output import OutputFormat, Report, console, emit, progress

EnvArg = Annotated[str, typer.Option("--env", "-e", help="Environment: dev, staging or prod.")]
RemoteOption = Annotated[str, typer.Option("--remote", help="The git remote pull requests go to.")]
BaseOption = Annotated[str, typer.Option("--base", help="The branch that holds the desired state.")]


def promote(
    model: Annotated[str, typer.Argument(help="Model name (the stack files' serving.model.name).")],
    *,
    version: Annotated[int, typer.Option("--version", help="Model version (its number in the dev registry).")],
    to: Annotated[str, typer.Option("--to", help="Target environment: dev, staging or prod.")],
    remote: RemoteOption = "origin",
    base: BaseOption = "main",
    no_push: Annotated[bool, typer.Option("--no-push", help="Commit on a local branch only.")] = False,
    no_pr: Annotated[bool, typer.Option("--no-pr", help="Push the branch but do not open the pull request.")] = False,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Set serving.shadow instead: VERSION scores a sample of TO's requests beside what it serves "
            "(the evidence prod's gate wants).",
        ),
    ] = False,
    sample_pct: Annotated[
        float, typer.Option("--sample-pct", min=0.01, max=100, help="With --shadow: share of requests scored.")
    ] = 10,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Open a pull request that pins VERSION in stacks/Pulumi.<TO>.yaml (it must serve in the previous environment)."""
    from pipelines.release.promote import request_promotion  # noqa: PLC0415

    result = request_promotion(
        repo_root(),
        model,
        version,
        to,
        remote=remote,
        base=base,
        push_branch=not no_push,
        open_pr=not no_pr,
        shadow=shadow,
        sample_pct=sample_pct,
    )
    data = result.__dict__
    if fmt is OutputFormat.JSON:
        emit(Report("promote", [], data=data), fmt)
        return
    console.print(
        f"{'Shadow' if shadow else 'Promotion'} of {result.model} v{result.version} "
        f"{'in' if shadow else 'to'} {result.environment} "
        f"(serves {f'v{result.previous}' if result.previous else 'nothing'} now): "
        f"branch {result.branch}, commit {result.commit[:10]}" + (", pushed" if result.pushed else ", not pushed")
    )
    if result.pull_request:
        console.print(f"Pull request: {result.pull_request}")
    for step in result.next_steps:
        console.print(f"next: {step}")


def affected(
    env: EnvArg,
    base: Annotated[str, typer.Option("--base", help="Compare HEAD with this ref.")] = "origin/main",
) -> None:
    """Print `changed=true|false`: does the change since BASE concern ENV? (a workflow step's output)"""
    from pipelines.release.gate import affected as concerns  # noqa: PLC0415

    sys.stdout.write(f"changed={'true' if concerns(repo_root(), env, base) else 'false'}\n")


def gate(
    env: EnvArg,
    base: Annotated[str, typer.Option("--base", help="The pull request's base (a ref git knows).")] = "origin/main",
    output: Annotated[Path | None, typer.Option("--output", help="Also write the Markdown report here.")] = None,
    record: Annotated[bool, typer.Option("--record", help="Record the model verdict as registry tags.")] = False,
    fmt: FormatOption = OutputFormat.MARKDOWN,
) -> None:
    """Decide a change of ENV between BASE and HEAD: model policy, plan, policy pack, cost; exit 1 if it fails."""
    from pipelines.release.gate import gate as decide  # noqa: PLC0415
    from pipelines.release.gate import markdown  # noqa: PLC0415

    root = repo_root()
    report = decide(root, env, base, record=record, progress=progress)
    text = markdown(report)
    if output is not None:
        output.write_text(text + "\n")
    if fmt is OutputFormat.JSON:
        sys.stdout.write(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    elif fmt is OutputFormat.MARKDOWN:
        sys.stdout.write(text + "\n")
    else:
        emit(
            Report(
                f"Gate for {env}: {'passed' if report.passed else 'FAILED'}",
                ["check", "passed", "detail"],
                [[c.name, c.passed, c.detail] for c in report.checks],
            ),
            fmt,
        )
    failed = [c.name for c in report.checks if not c.passed]
    progress(f"gate for {env} {'passed' if report.passed else 'failed'} in {report.seconds:.1f} s")
    if failed:
        raise CheckFailed(f"the gate for {env} failed: {', '.join(failed)}", hint="the report says why, check by check")


def sync(
    env: EnvArg,
    *,
    commit: Annotated[
        str | None, typer.Option("--commit", help="Deployed commit (default: $GITHUB_SHA, HEAD).")
    ] = None,
    pr: Annotated[int | None, typer.Option("--pr", help="Pull request (default: from the commit's subject).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who deploys (default: $GITHUB_ACTOR).")] = None,
    approved_by: Annotated[str | None, typer.Option("--approved-by", help="Who approved the deployment.")] = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Make ENV's registry serve the version its stack file pins, and record the deployment (idempotent)."""
    from pipelines.release.promote import configured_registries  # noqa: PLC0415
    from pipelines.release.sync import deployment_context  # noqa: PLC0415
    from pipelines.release.sync import sync as converge  # noqa: PLC0415

    root = repo_root()
    context = deployment_context(root, commit, pr, actor)
    result = converge(root, env, configured_registries(root), context, approved_by=approved_by)
    if fmt is OutputFormat.JSON:
        emit(Report("sync", [], data={**result.__dict__, "changed": result.changed, **context}), fmt)
        return
    if result.version is None:
        console.print(f"{env} pins no version: nothing to sync")
    elif not result.changed:
        console.print(f"{env} already serves {result.model} v{result.version} as pinned at {context['commit'][:10]}")
    else:
        done = [("copied into the registry", result.copied), ("alias moved", result.alias_moved), ("recorded", True)]
        console.print(
            f"{env} now serves {result.model} v{result.version} (was {served(result.previous)}): "
            + ", ".join(what for what, did in done if did)
        )


def served(version: int | None, nothing: str = "nothing") -> str:
    """`v3`, or what stands for no version (never `vnothing`)."""
    return f"v{version}" if version else nothing


def rollback(
    env: EnvArg,
    *,
    push: Annotated[bool, typer.Option("--push", help="Push the revert to the base branch directly.")] = False,
    no_pr: Annotated[bool, typer.Option("--no-pr", help="Push the branch but do not open the pull request.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (goes into the commit message).")] = "",
    remote: RemoteOption = "origin",
    base: BaseOption = "main",
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Revert ENV's last promotion: a pull request, or with --push straight to the base branch."""
    from pipelines.release.rollback import rollback as revert  # noqa: PLC0415

    result = revert(repo_root(), env, remote=remote, base=base, direct=push, open_pr=not no_pr, reason=reason)
    if fmt is OutputFormat.JSON:
        emit(Report("rollback", [], data={**result.__dict__, "reverted": result.reverted.__dict__}), fmt)
        return
    change = result.reverted
    console.print(
        f"Rolled back {env}: {served(change.after)} → {served(change.before)} by reverting {change.commit[:10]}; "
        f"commit {result.commit[:10]} pushed to {result.pushed_to}"
    )
    if result.pull_request:
        console.print(f"Pull request: {result.pull_request}")
    for step in result.next_steps:
        console.print(f"next: {step}")
    if push:
        console.print(f"next: deploy it: pulumi up -s {env}, then mlops sync --env {env}")


def rollout_status(
    env: Annotated[str, typer.Option("--env", "-e", help="Environment: local, dev, staging or prod.")],
    timeout: Annotated[float, typer.Option("--timeout", min=1, max=21600, help="Seconds to wait.")] = 1800,
    interval: Annotated[float, typer.Option("--interval", min=0.1, max=600, help="Seconds between reads.")] = 10,
    kubectl: Annotated[str, typer.Option("--kubectl", help="The kubectl to run.")] = "kubectl",
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Wait for serving's canary rollout on each of ENV's clusters; exit 1 if its analysis aborted it."""
    from pipelines.release.rollout import watch  # noqa: PLC0415

    states = watch(repo_root(), env, timeout=timeout, interval=interval, kubectl=kubectl, progress=progress)
    emit(
        Report(
            f"Rollout of serving in {env}: complete",
            ["cluster", "phase", "steps"],
            [[c, s.phase, s.steps] for c, s in states.items()],
            data={c: s.__dict__ for c, s in states.items()},
        ),
        fmt,
    )


def report(
    env: EnvArg,
    ref: Annotated[str, typer.Option("--ref", help="History to read (default: HEAD).")] = "HEAD",
    offline: Annotated[bool, typer.Option("--offline", help="Git history only; do not read the registries.")] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """The audit trail of ENV: which version served when, who merged and deployed it, which gates it passed, and
    its lineage (the dataset version and SHA-256, the feature code's SHA, the training run: `-f json`)."""
    from core.errors import MlopsError  # noqa: PLC0415
    from pipelines.release.audit import audit_trail  # noqa: PLC0415
    from pipelines.release.promote import configured_registries  # noqa: PLC0415

    root = repo_root()
    registries = None
    warnings: list[str] = []
    if not offline:
        try:
            registries = configured_registries(root)
        except MlopsError as exc:
            warnings.append(f"registry not read: {exc.message}")
    entries, more = audit_trail(root, env, ref, registries)
    for warning in [*warnings, *more]:
        progress(warning)
    rows = [
        [
            e.change.date[:16].replace("T", " "),
            e.until[:16].replace("T", " ") if e.until else "now",
            f"{e.change.kind} {served(e.change.before, '—')} → {served(e.change.after, '—')}",
            e.change.commit[:8] + (f" #{e.change.pull_request}" if e.change.pull_request else ""),
            e.change.author,
            e.deployment.get("by"),
            e.deployment.get("approved_by") or None,
            {"true": "passed", "false": "FAILED"}.get(e.gate.get("passed", "")),
            e.trained_on,
        ]
        for e in entries
    ]
    emit(
        Report(
            f"Audit trail of {env}",
            [
                "served from",
                "until",
                "change",
                "commit, PR",
                "author",
                "deployed by",
                "approved by",
                "gate",
                "trained on",
            ],
            rows,
            data={"environment": env, "entries": [e.to_json() for e in entries], "warnings": [*warnings, *more]},
            footer=f"{len(entries)} change(s) of {env}'s pin on {ref}",
        ),
        fmt,
    )

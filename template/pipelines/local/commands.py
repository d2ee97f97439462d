"""`mlops local up|status|down|promote|traffic`: the model lifecycle on localhost."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from core.errors import CheckFailed
from infra.config import load_stack
from pipelines.common.options import FormatOption, repo_root
from pipelines.common.output import OutputFormat, Report, console, emit, progress
from pipelines.local.environment import LocalEnvironment, Ports, UpSummary

app = typer.Typer(
    help="The whole model lifecycle on localhost: tracking, registry, promotion, serving.", no_args_is_help=True
)

PortOption = typer.Option(min=0, max=65535, help="0 picks a free port")
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait", min=0, max=3600, help="Seconds to wait for another `mlops local up|down` to finish (default: refuse)."
    ),
]


def environment() -> LocalEnvironment:
    root = repo_root()
    model = load_stack(root, "local").serving.model.name
    home = os.environ.get("MLOPS_LOCAL_HOME")  # another state directory (benchmarks, parallel checkouts)
    return LocalEnvironment(root, model, progress=progress, home=Path(home).resolve() if home else None)


@app.command("up")
def up(
    *,
    train: Annotated[
        bool, typer.Option("--train", help="Train and promote a new version even if prod serves one.")
    ] = False,
    object_store_port: Annotated[int, PortOption] = 0,
    tracking_port: Annotated[int, PortOption] = 0,
    serving_port: Annotated[int, PortOption] = 0,
    wait: WaitOption = 0,
    containers: Annotated[
        bool,
        typer.Option(
            "--containers", help="Run MLflow and BentoML from the apps' images (podman; built first, cached)."
        ),
    ] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Start (or reuse) the object store, MLflow and BentoML; train and promote when needed; smoke-test."""
    env = environment()
    env.containers = containers
    summary = env.up(train=train, ports=Ports(object_store_port, tracking_port, serving_port), wait=wait)
    render_summary(summary, fmt)
    if summary.refused:
        raise CheckFailed(summary.refused, hint="the previous version keeps serving; see the gate results above")
    if not all(ok for _, ok, _ in summary.smoke):
        raise CheckFailed("the smoke test failed", hint=f"see the serving log: {summary.services['serving'].log}")


def render_summary(summary: UpSummary, fmt: OutputFormat) -> None:
    services = [
        [name, proc.url, proc.pid, ("reused" if name in summary.reused else "started")
         + (f" from {summary.images[name]}" if name in summary.images else "")]
        for name, proc in summary.services.items()
    ]  # fmt: skip
    gates = [
        [
            p["environment"],
            p["model_version"],
            "passed" if p["passed"] else "refused",
            "; ".join(f"{r['rule']}: {r['detail']}" for r in p["rules"] if not r["passed"]) or "all rules passed",
        ]
        for p in summary.promotions
    ]
    data: dict[str, Any] = {
        "services": {
            n: {"url": p.url, "pid": p.pid, "log": p.log, "reused": n in summary.reused}
            for n, p in summary.services.items()
        },
        "images": summary.images,
        "trained_version": summary.trained_version,
        "champions": summary.champions,
        "gates": summary.promotions,
        "served_version": summary.served_version,
        "smoke": [{"check": c, "passed": ok, "detail": d} for c, ok, d in summary.smoke],
        "seconds": round(summary.seconds, 1),
        "logs": summary.logs,
    }
    if fmt is OutputFormat.JSON:
        emit(Report("local environment", [], data=data), fmt)
        return
    emit(Report("Services (127.0.0.1 only)", ["service", "url", "pid", ""], services), fmt)
    emit(
        Report(
            "Model versions per environment (alias champion)",
            ["environment", "serves"],
            [[env, f"v{v}" if v else "nothing yet"] for env, v in summary.champions.items()],
        ),
        fmt,
    )
    if gates:
        emit(
            Report(
                f"Promotion gates (trained version {summary.trained_version})",
                ["environment", "version", "verdict", "details"],
                gates,
            ),
            fmt,
        )
    if summary.smoke:
        emit(
            Report(
                "Smoke test",
                ["check", "result", "detail"],
                [[c, "ok" if ok else "FAILED", d] for c, ok, d in summary.smoke],
            ),
            fmt,
        )
    serving = summary.services["serving"].url
    tracking = summary.services["tracking"].url
    serves = f"prod serves v{summary.served_version}" if summary.served_version else "prod serves nothing yet"
    console.print(
        f"\nLocal platform {'up' if not summary.refused else 'up, promotion refused'} in {summary.seconds:.1f}s: "
        f"{serves} at {serving}/predict\n"
        f"  MLflow UI: {tracking}    metrics: {serving}/metrics    logs: {summary.logs}\n"
        f"  try:  curl -s -X POST {serving}/predict -H 'content-type: application/json' "
        f"-d @apps/serving/smoke_example.json\n"
        f"  drift: `mlops drift --env local` (the served inputs against the training data; "
        f"`python -m pipelines.bench.serving` for latency)\n"
        f"  next: `mlops local up --train` (new version through the gates), `mlops local status`, `mlops local down`"
    )


@app.command("status")
def status(fmt: FormatOption = OutputFormat.TABLE) -> None:
    """What the local environment runs, and what each environment serves."""
    env = environment()
    rows = env.status()
    if not rows:
        console.print("The local environment is not running: start it with `mlops local up`.")
        return
    emit(
        Report(
            "Local services",
            ["service", "url", "pid", "state", "processes", "rss_mb", "log"],
            [list(r.values()) for r in rows],
            data=rows,
        ),
        fmt,
    )
    states = {r["state"] for r in rows}
    if fmt is not OutputFormat.JSON and "leaked" in states:
        console.print("leaked: the server exited but processes it started still run; `mlops local down` stops them.")
    if fmt is not OutputFormat.JSON and "not ours" in states:
        console.print(
            "not ours: the server exited and its pid now belongs to another program, which is never signalled; "
            "`mlops local up` starts a new server."
        )
    if fmt is not OutputFormat.JSON and any(r["service"] == "tracking" and r["state"] == "running" for r in rows):
        emit(
            Report(
                "Model versions per environment",
                ["environment", "serves"],
                [[e, f"v{v}" if v else "nothing yet"] for e, v in env.champions().items()],
            ),
            fmt,
        )


@app.command("down")
def down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the registry, artifacts and logs.")] = False,
    wait: WaitOption = 0,
) -> None:
    """Stop every process `local up` started (whatever its process group). Data is kept unless --purge."""
    env = environment()
    stopped = env.down(purge=purge, wait=wait)
    if stopped:
        console.print(f"Stopped: {', '.join(stopped)}." + (" Data purged." if purge else f" Data kept in {env.home}."))
    else:
        console.print("Nothing was running." + (" Data purged." if purge else ""))


@app.command("promote")
def promote_cmd(
    model: Annotated[str, typer.Argument(help="Model name, e.g. the reference model from the stack files.")],
    version: Annotated[int, typer.Option("--version", help="Model version (its number in the dev registry).")],
    to: Annotated[str, typer.Option("--to", help="Target environment: dev, staging or prod.")],
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow", help="Make it the environment's shadow (scored beside what it serves, answering nothing)."
        ),
    ] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Gate a version and move it into an environment's local registry (no git; see `mlops promote`).

    prod's policy wants shadow evidence: promote with --shadow first, replay traffic (`mlops local
    traffic`), then promote without --shadow; the gate reads the evidence from serving's /metrics."""
    from pipelines.promotion.registries import promote  # noqa: PLC0415

    env = environment()
    result = promote(
        model,
        version,
        to,
        env.registries(),
        actor="mlops local promote",
        shadow=shadow,
        evidence=None if shadow else env.evidence_reader(to),
    )
    emit(
        Report(
            f"{model} version {version} → {to}" + (" (shadow)" if shadow else ""),
            ["rule", "passed", "detail"],
            [[r.rule, r.passed, r.detail] for r in result.verdict.rules],
            data=result.verdict.as_dict(),
        ),
        fmt,
    )
    if shadow and fmt is not OutputFormat.JSON:
        serving = env.state().get("serving")
        if to == "prod" and serving is not None:
            env.wait_shadow(serving, version, timeout=120)
            console.print(
                f"prod's serving scores version {version} beside version {result.previous_model_version} on every "
                f"request. next: `mlops local traffic --rows 1000`, then `mlops local promote {model} "
                f"--version {version} --to prod`"
            )
        else:
            console.print(f"{to} has version {version} as its shadow in its registry (local serving serves prod)")


@app.command("traffic")
def traffic(
    rows: Annotated[int, typer.Option("--rows", min=1, max=1_000_000, help="Held-out rows to send.")] = 1000,
    batch: Annotated[int, typer.Option("--batch", min=1, max=1000, help="Rows per request.")] = 1,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Replay the reference data's held-out rows against local serving (shadow, drift and dashboards get data)."""
    from core.registry import registered_name  # noqa: PLC0415
    from pipelines.local.traffic import replay  # noqa: PLC0415

    env = environment()
    serving = env.running().get("serving")
    if serving is None:
        raise CheckFailed("local serving is not running", hint="start it with `mlops local up`")
    summary = replay(serving.url, rows, batch, progress=progress)
    data = summary.as_dict()
    info = httpx.post(serving.url + "/model", json={}, timeout=10).json()
    shadow = info.get("shadow") or {}
    if shadow.get("loaded") and info.get("model_version"):
        from pipelines.promotion.evidence import from_serving  # noqa: PLC0415

        env.wait_shadow(serving, shadow["model_version"], timeout=60, idle=True)
        seen = from_serving(
            serving.url, registered_name("prod", env.model), info["model_version"], shadow["model_version"]
        )
        data["shadow"] = seen.as_dict()
    if fmt is OutputFormat.JSON:
        emit(Report("traffic", [], data=data), fmt)
    else:
        console.print(
            f"Sent {summary.rows} rows in {summary.requests} requests to {serving.url} in {summary.seconds:.1f}s: "
            f"{summary.requests - summary.failed} answered 200, {summary.failed} not; predicted classes "
            f"{dict(summary.predicted)}; served by version(s) {', '.join(summary.served_versions) or 'none'}"
        )
        if "shadow" in data:
            s = data["shadow"]
            console.print(
                f"Shadow v{s['candidate_version']} beside v{s['champion_version']} (since serving started): "
                f"{s['requests']:g} requests scored, agreement {s['agreement']}, p95 {s['p95_ms']} ms, "
                f"{s['dropped']:g} dropped, {s['failed']:g} failed"
            )
    if summary.failed:
        raise CheckFailed(f"{summary.failed} of {summary.requests} requests were not answered 200")

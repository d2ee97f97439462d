"""`mlops images status | targets | pin`: the apps' container images per environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.errors import BadInput
from infra.naming import IMAGES
from pipelines.common.options import FormatOption, repo_root
from pipelines.common.output import OutputFormat, Report, console, emit, progress
from pipelines.containers.builds import Base

app = typer.Typer(help="The apps' container images: what each environment runs, where builds go, pinning a build.")

EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment: dev, staging, prod (or local).")]


@app.command("status")
def status_command(
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Environments to show (default: every stack file).")
    ] = None,
    ref: Annotated[str, typer.Option("--ref", help="Compare the builds with this commit's sources.")] = "HEAD",
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Which image digest each environment runs, and whether it was built from REF's sources."""
    from pipelines.images.status import next_steps, status  # noqa: PLC0415

    found = status(repo_root(), env, ref)
    rows = [[s.environment, s.image, (s.digest or "-")[:19], (s.commit or "-")[:10], s.state, s.detail] for s in found]
    steps = next_steps(found)
    footer = "every environment runs the current build" if not steps else "next:\n  " + "\n  ".join(steps)
    emit(
        Report(
            f"Images (compared with {ref})",
            ["environment", "image", "digest", "built from", "state", "detail"],
            rows,
            data=[s.__dict__ for s in found],
            footer=footer,
        ),
        fmt,
    )


@app.command("targets")
def targets_command(
    env: EnvOption,
    *,
    tag: Annotated[str, typer.Option("--tag", help="The tag this build is pushed as (tags are immutable).")],
    aws_role_arn: Annotated[
        str | None,
        typer.Option("--aws-role-arn", help="The environment's deploy role (aws stacks): its account's ECR."),
    ] = None,
    github_output: Annotated[
        Path | None, typer.Option("--github-output", help="Append the names as step outputs to this file.")
    ] = None,
) -> None:
    """The names one build of each image is pushed as, in ENV's registries (a workflow step's outputs)."""
    from pipelines.common.git import Git  # noqa: PLC0415
    from pipelines.images.targets import attestor, push_targets, registry_hosts  # noqa: PLC0415

    root = repo_root()
    targets = push_targets(root, env, tag=tag, aws_role_arn=aws_role_arn)
    outputs = {image: "\n".join(names) for image, names in targets.items()}
    hosts = registry_hosts(targets)
    outputs["ecr_host"], outputs["gar_host"] = hosts.get("aws", ""), hosts.get("gcp", "")
    # GKE admits the build only with the stack's attestation (Binary Authorization): who signs, with which key.
    outputs["gar_attestor"], outputs["gar_attestor_key"] = attestor(root, env)
    outputs["commit"] = Git(root).commit_of("HEAD")  # the images' org.opencontainers.image.revision
    text = "".join(f"{name}<<MLOPS_EOF\n{value}\nMLOPS_EOF\n" for name, value in outputs.items())
    if github_output is not None:
        with github_output.open("a") as handle:
            handle.write(text)
    for image, names in targets.items():
        for name in names:
            console.print(f"{image}: {name}")


@app.command("pin")
def pin_command(
    env: EnvOption,
    *,
    serving: Annotated[str, typer.Option("--serving", help="Digest of the serving build (sha256:…).")],
    tracking: Annotated[str, typer.Option("--tracking", help="Digest of the tracking build (sha256:…).")],
    commit: Annotated[str, typer.Option("--commit", help="The commit both were built from (40 hex).")],
    remote: Annotated[str, typer.Option("--remote", help="The git remote pull requests go to.")] = "origin",
    base: Annotated[str, typer.Option("--base", help="The branch that holds the desired state.")] = "main",
    no_push: Annotated[bool, typer.Option("--no-push", help="Commit on a local branch only.")] = False,
    no_pr: Annotated[bool, typer.Option("--no-pr", help="Push the branch but do not open the pull request.")] = False,
    registry: Annotated[
        str | None,
        typer.Option("--registry", help="local stack only: the registry its cluster pulls from (<host>/<path>)."),
    ] = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Open a pull request that pins the built digests in stacks/Pulumi.<ENV>.yaml."""
    from pipelines.images.pins import request_pin  # noqa: PLC0415

    if no_push and no_pr:
        raise BadInput("--no-push already means no pull request: give one of --no-push or --no-pr")
    result = request_pin(
        repo_root(),
        env,
        {"serving": serving, "tracking": tracking},
        commit,
        remote=remote,
        base=base,
        push_branch=not no_push,
        open_pr=not no_pr,
        registry=registry,
    )
    if fmt is OutputFormat.JSON:
        emit(Report("images pin", [], data=result.__dict__), fmt)
        return
    console.print(
        f"Images built from {result.source_commit[:10]} for {result.environment}: branch {result.branch}, "
        f"commit {result.commit[:10]}" + (", pushed" if result.pushed else ", not pushed")
    )
    for image, digest in result.digests.items():
        console.print(f"  {image}: {result.previous[image] or 'nothing'} -> {digest}")
    if result.pull_request:
        console.print(f"Pull request: {result.pull_request}")
    for step in result.next_steps:
        console.print(f"next: {step}")


@app.command("build")
def build_command(
    image: Annotated[
        list[str] | None, typer.Option("--image", "-i", help="Images to build (default: every one).")
    ] = None,
    base: Annotated[
        Base, typer.Option("--base", help="auto: the public bases if they can be pulled, else locally made ones.")
    ] = Base.AUTO,
    push: Annotated[
        str | None,
        typer.Option("--push", help="Push each image to <registry>/<path>/<image> and report the registry's digest."),
    ] = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Build the apps' images with podman (tagged localhost/<project>/<image>:<commit>)."""
    from pipelines.containers.builds import build_all  # noqa: PLC0415

    root = repo_root()
    built = build_all(root, image or IMAGES, base=base, push_to=push, progress=progress)
    rows = [
        [b.image, "local" if b.base.startswith("localhost/") else b.base, f"{b.size_bytes / 1e6:,.0f}",
         f"{b.seconds:.0f}", (b.digest or "-")[:19]]
        for b in built
    ]  # fmt: skip
    footer = "\n".join(f"{b.image}: {b.pushed_as or b.tag}" for b in built)
    if push and len(built) == len(IMAGES):
        from pipelines.common.git import Git  # noqa: PLC0415

        digests = " ".join(f"--{b.image} {b.digest}" for b in built)
        footer += (
            f"\nnext: mlops images pin --env local --registry {push} {digests} --commit {Git(root).commit_of('HEAD')}"
        )
    emit(
        Report(
            "Images",
            ["image", "base", "size MB", "build s", "registry digest"],
            rows,
            data=[b.__dict__ for b in built],
            footer=footer,
        ),
        fmt,
    )

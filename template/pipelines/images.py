"""The apps' container images: where a build is pushed, which build each environment pins, and pinning
a new build by pull request (the same git-first path as a model promotion).

A build is identified by its digest; what it was built from, by the commit and its *build context*:
the Dockerfile, `.dockerignore` and every path the Dockerfile copies, as git trees. Two commits with
the same context make the same image, so an environment is `current` when its build's context is
the checkout's, whatever else changed in between.
"""

from __future__ import annotations

import hashlib
import io
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from infra.config import list_stacks, load_stack, project_name
from infra.naming import IMAGES, artifact_registry_path, ecr_registry, ecr_repository
from infra.settings import PROMOTION_ORDER, Environment, ImagePin, Settings
from pipelines.errors import BadInput
from pipelines.gitops import Git, commit_branch, stack_path, validate_stack_text

DOCKERFILES = {image: f"apps/{image}/Dockerfile" for image in IMAGES}
DOCKERIGNORE = ".dockerignore"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$")
TRAILER_KIND = "Mlops-Change"
TRAILER_ENV = "Mlops-Environment"
TRAILER_COMMIT = "Mlops-Image-Commit"


def trailer_of(image: str) -> str:
    return f"Mlops-Image-{image.capitalize()}"


# --- build contexts -------------------------------------------------------------------------------


def parse_dockerfile(text: str) -> DockerfileParser:
    """A parser over `text` in memory (without a file object, dockerfile-parse writes ./Dockerfile)."""
    parser = DockerfileParser(fileobj=io.BytesIO())
    parser.content = text
    return parser


def copied_paths(dockerfile: str) -> list[str]:
    """The build-context paths a Dockerfile's COPY/ADD instructions read (not `--from` another stage)."""
    parser = parse_dockerfile(dockerfile)
    paths: list[str] = []
    for instruction in parser.structure:
        if instruction["instruction"] not in ("COPY", "ADD"):
            continue
        value = instruction["value"].strip()
        if value.startswith("["):
            import json  # noqa: PLC0415 -- the exec form is rare

            words = json.loads(value)
        else:
            words = shlex.split(value)
        options = [w for w in words if w.startswith("--")]
        if any(o.startswith("--from") for o in options):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        paths += [s.removeprefix("./").rstrip("/") or "." for s in sources]
    return paths


def context_paths(git: Git, ref: str, image: str) -> list[str] | None:
    """Dockerfile, .dockerignore and copied paths of `image` at `ref` (None: no Dockerfile there)."""
    dockerfile = git.show(ref, DOCKERFILES[image])
    if dockerfile is None:
        return None
    return sorted({DOCKERFILES[image], DOCKERIGNORE, *copied_paths(dockerfile)})


def context_id(git: Git, ref: str, image: str) -> str | None:
    """A short fingerprint of `image`'s build context at `ref` (None: `ref` or the Dockerfile is unknown)."""
    if not git.ok("cat-file", "-e", ref + "^{commit}"):
        return None
    paths = context_paths(git, ref, image)
    if paths is None:
        return None
    # One line per path that exists at `ref` (mode, type, object id, path): a missing path is absent.
    tree = git.run("ls-tree", "--full-tree", ref, "--", *paths)
    return hashlib.sha256(f"{paths}\n{tree}".encode()).hexdigest()[:16]


def changes_since(git: Git, commit: str, image: str, ref: str = "HEAD") -> int:
    """Commits between `commit` and `ref` that touched `image`'s build context."""
    paths = context_paths(git, ref, image) or [DOCKERFILES[image]]
    log = git.run("log", "--format=%H", f"{commit}..{ref}", "--", *paths, check=False)
    return len(log.split())


# --- where images go ------------------------------------------------------------------------------


def _cloud_settings(root: Path, environment: str) -> Settings:
    settings = load_stack(root, environment)
    if settings.environment is Environment.LOCAL:
        raise BadInput(
            "the local stack has no registry of its own: build the images yourself and set "
            "images.<app>.reference in stacks/Pulumi.local.yaml"
        )
    return settings


ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role/[\w+=,.@/-]+$")


def repositories(project: str, settings: Settings, image: str, aws_account: str) -> list[str]:
    """`<registry>/<repository>` of `image` in each cloud registry of the stack (pushed to, pulled from)."""
    environment = settings.environment.value
    found = []
    if settings.aws is not None:
        found.append(f"{ecr_registry(aws_account, settings.aws.region)}/{ecr_repository(project, environment, image)}")
    if settings.gcp is not None:
        path = artifact_registry_path(settings.gcp.region, settings.gcp.project, project, environment)
        found.append(f"{path}/{image}")
    return found


def push_targets(root: Path, environment: str, *, tag: str, aws_role_arn: str | None) -> dict[str, list[str]]:
    """The `<registry>/<repository>:<tag>` names one build of each image is pushed as, per cloud registry.
    The ECR registry is the deploy role's account's (`aws_role_arn`, the workflow's AWS_DEPLOY_ROLE_ARN)."""
    if not TAG.match(tag) or tag == "latest":
        raise BadInput(f"--tag must be a Docker tag other than `latest` (got {tag!r})")
    settings = _cloud_settings(root, environment)
    account = ""
    if settings.aws is not None:
        match = ROLE_ARN.match(aws_role_arn or "")
        if match is None:
            raise BadInput(
                f"--aws-role-arn must be the {environment} deploy role, arn:aws:iam::<account>:role/<name> "
                f"(got {aws_role_arn!r})",
                hint="the environment's AWS_DEPLOY_ROLE_ARN variable (stack output aws.deploy_role_arn)",
            )
        account = match.group(1)
    elif aws_role_arn:
        raise BadInput(f"--aws-role-arn given, but the {environment} stack does not use aws")
    project = project_name(root)
    return {image: [f"{r}:{tag}" for r in repositories(project, settings, image, account)] for image in IMAGES}


def registry_hosts(targets: dict[str, list[str]]) -> dict[str, str]:
    """The registry host of each cloud the names go to (`docker login` needs them): {"aws"|"gcp": host}."""
    hosts: dict[str, str] = {}
    for name in (n for names in targets.values() for n in names):
        host = name.split("/", 1)[0]
        hosts["aws" if ECR_HOST.match(host) else "gcp"] = host
    return hosts


def pulled_as(root: Path, settings: Settings, image: str, pin: ImagePin) -> list[str]:
    """What the clusters pull for a pin (ECR: `<account>` is the stack's, known only to AWS)."""
    if pin.reference is not None:
        return [pin.reference]
    return [f"{r}@{pin.digest}" for r in repositories(project_name(root), settings, image, "<account>")]


# --- status ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageStatus:
    environment: str
    image: str
    digest: str | None
    commit: str | None
    pulled_as: list[str]
    state: str  # current | behind | unknown | not built
    detail: str


def status(root: Path, environments: Iterable[str] | None = None, ref: str = "HEAD") -> list[ImageStatus]:
    """Which build each environment pins, and whether it was built from the checkout's build context."""
    git = Git(root)
    git.require_repository()
    stacks = list(environments) if environments else list_stacks(root)
    current = {image: context_id(git, ref, image) for image in IMAGES}
    found = []
    for environment in stacks:
        settings = load_stack(root, environment)
        for image in IMAGES:
            pin: ImagePin | None = getattr(settings.images, image)
            found.append(_status_of(root, git, settings, image=image, pin=pin, current=current[image], ref=ref))
    return found


def _status_of(
    root: Path, git: Git, settings: Settings, *, image: str, pin: ImagePin | None, current: str | None, ref: str
) -> ImageStatus:
    environment = settings.environment.value
    if pin is None:
        return ImageStatus(environment, image, None, None, [], "not built", "nothing pinned: the apps are not deployed")
    pulled = pulled_as(root, settings, image, pin)
    digest = pin.digest or (pin.reference.split("@", 1)[1] if pin.reference and "@" in pin.reference else None)
    if pin.commit is None:
        return ImageStatus(environment, image, digest, None, pulled, "unknown", "no build commit recorded")
    built = context_id(git, pin.commit, image)
    if built is None:
        detail = f"commit {pin.commit[:10]} is not in this clone (fetch it: git fetch --unshallow)"
        return ImageStatus(environment, image, digest, pin.commit, pulled, "unknown", detail)
    if built == current:
        return ImageStatus(environment, image, digest, pin.commit, pulled, "current", f"built from {ref}'s sources")
    count = changes_since(git, pin.commit, image, ref)
    detail = f"{count} commit(s) changed its build context since {pin.commit[:10]}"
    return ImageStatus(environment, image, digest, pin.commit, pulled, "behind", detail)


# --- pinning a build ------------------------------------------------------------------------------


@dataclass
class PinRequest:
    environment: str
    digests: dict[str, str]
    source_commit: str
    previous: dict[str, str | None]
    branch: str
    commit: str
    pushed: bool
    pull_request: str | None = None
    next_steps: list[str] = field(default_factory=list)


def images_block(text: str, project: str, source: str) -> tuple[int, int]:
    """(first, end) line indexes of the `<project>:images:` mapping's body in a stack file."""
    lines = text.splitlines(keepends=True)
    header = re.compile(rf"^  {re.escape(project)}:images:\s*(#.*)?$")
    starts = [i for i, line in enumerate(lines) if header.match(line.rstrip("\n"))]
    if len(starts) != 1:
        raise BadInput(f"{source}: expected one `{project}:images:` mapping (found {len(starts)})")
    end = starts[0] + 1
    while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
        end += 1
    return starts[0] + 1, end


def set_images(text: str, project: str, source: str, pins: dict[str, ImagePin]) -> str:
    """The stack file's text with only the pinned images replaced; other keys and comments are kept."""
    first, end = images_block(text, project, source)
    lines = text.splitlines(keepends=True)
    groups: list[tuple[str | None, list[str]]] = []
    for line in lines[first:end]:
        entry = re.match(r"^    ([A-Za-z_][\w-]*):", line)
        if entry:
            groups.append((entry.group(1), [line]))
        elif groups:
            groups[-1][1].append(line)
        else:
            groups.append((None, [line]))
    rendered = {image: _render_pin(image, pin) for image, pin in pins.items()}
    body: list[str] = []
    for name, group in groups:
        body += rendered.pop(name) if name in rendered else group
    for remaining in rendered.values():
        body[0:0] = remaining
    return "".join(lines[:first] + body + lines[end:])


def _render_pin(image: str, pin: ImagePin) -> list[str]:
    out = [f"    {image}:\n"]
    for key in ("digest", "reference", "commit"):
        value = getattr(pin, key)
        if value is not None:
            out.append(f"      {key}: {value}\n")
    return out


def pins_in(text: str, project: str, source: str) -> dict[str, ImagePin | None]:
    try:
        images = YAML(typ="safe").load(text)["config"][f"{project}:images"]
        return {image: ImagePin.model_validate(images[image]) if images.get(image) else None for image in IMAGES}
    except (YAMLError, KeyError, TypeError, ValueError) as exc:
        raise BadInput(f"{source}: cannot read {project}:images ({exc})") from None


def request_pin(
    root: Path,
    environment: str,
    digests: dict[str, str],
    source_commit: str,
    *,
    remote: str = "origin",
    base: str = "main",
    push_branch: bool = True,
    open_pr: bool = True,
) -> PinRequest:
    """Commit the new digests to `stacks/Pulumi.<env>.yaml` on a branch from the remote's base, push it
    and open a pull request. Outside dev, the build must be of what the previous environment runs."""
    _validate_pin_input(root, environment, digests, source_commit)
    git = Git(root)
    git.require_repository()
    git.require_clean()
    git.require_remote(remote)
    git.fetch(remote, base)
    if not git.ok("cat-file", "-e", source_commit + "^{commit}"):
        raise BadInput(
            f"--commit {source_commit} is not in this clone", hint="fetch the history (actions/checkout fetch-depth: 0)"
        )
    base_ref = f"{remote}/{base}"
    path = stack_path(root, environment)
    text = git.show(base_ref, path)
    if text is None:
        raise BadInput(f"{base_ref} has no {path}: the {environment} environment does not exist there yet")
    project = project_name(root)
    previous = pins_in(text, project, f"{path} at {base_ref}")
    if all(previous[i] is not None and previous[i].digest == digests[i] for i in IMAGES):  # type: ignore[union-attr]
        raise BadInput(f"{environment} already pins these digests on {base_ref}: nothing to change")
    _require_in_order(git, base_ref, environment, source_commit)
    pins = {image: ImagePin(digest=digests[image], commit=source_commit) for image in IMAGES}
    new_text = set_images(text, project, path, pins)
    validate_stack_text(root, environment, new_text)
    branch = f"images/{environment}/{source_commit[:12]}"
    if git.ok("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"):
        raise BadInput(f"a local branch {branch} exists: delete it (`git branch -D {branch}`) and run again")
    subject = f"Pin images built from {source_commit[:10]} in {environment}"
    trailers = "\n".join(
        [f"{TRAILER_KIND}: images", f"{TRAILER_ENV}: {environment}", f"{TRAILER_COMMIT}: {source_commit}"]
        + [f"{trailer_of(image)}: {digests[image]}" for image in IMAGES]
    )
    before = ", ".join(f"{i} {p.digest[:19] if p and p.digest else 'nothing'}" for i, p in previous.items())
    body = f"{environment} pinned {before}.\n\n{trailers}"
    commit = commit_branch(
        git,
        base_ref,
        (path, new_text),
        message=f"{subject}\n\n{body}",
        branch=branch,
        remote=remote,
        push_branch=push_branch,
    )
    request = PinRequest(
        environment,
        dict(digests),
        source_commit,
        {i: (p.digest if p else None) for i, p in previous.items()},
        branch,
        commit,
        pushed=push_branch,
    )
    from pipelines.release import open_pull_request  # noqa: PLC0415 -- pulls in the registry client

    title_body = (subject, f"{body}\n\nThe `promote` workflow gates this change like any change of {path}.")
    open_pull_request(root, request, base=base, remote=remote, title_body=title_body, open_pr=open_pr and push_branch)
    return request


def _validate_pin_input(root: Path, environment: str, digests: dict[str, str], source_commit: str) -> None:
    known = [e.value for e in PROMOTION_ORDER]
    if environment not in known:
        raise BadInput(
            f"--env must be one of {', '.join(known)} (got {environment!r}); the local stack is edited by hand"
        )
    _cloud_settings(root, environment)
    for image in IMAGES:
        if not DIGEST.match(digests.get(image) or ""):
            raise BadInput(f"--{image} must be a digest sha256:<64 hex> (got {digests.get(image)!r})")
    if not COMMIT.match(source_commit):
        raise BadInput(f"--commit must be a full 40-hex commit id (got {source_commit!r})")


def _require_in_order(git: Git, base_ref: str, environment: str, source_commit: str) -> None:
    """Outside dev, the build's context must be the one the previous environment runs (no skipping)."""
    order = [e.value for e in PROMOTION_ORDER]
    index = order.index(environment)
    if index == 0:
        return
    source = order[index - 1]
    path = stack_path(git.root, source)
    text = git.show(base_ref, path)
    runs = pins_in(text, project_name(git.root), f"{path} at {base_ref}") if text else dict.fromkeys(IMAGES)
    for image in IMAGES:
        pin = runs[image]
        wanted = context_id(git, source_commit, image)
        running = context_id(git, pin.commit, image) if pin is not None and pin.commit else None
        if running is None or running != wanted:
            raise BadInput(
                f"{image} built from {source_commit[:10]} is not what {source} runs on {base_ref} "
                f"({f'built from {pin.commit[:10]}' if pin and pin.commit else 'nothing pinned'}): "
                "images move dev -> staging -> prod like models",
                hint=f"pin it in {source} first, or build the commit {source} runs for {environment}",
            )


def next_steps(found: list[ImageStatus]) -> list[str]:
    """What to run so the environments catch up, in promotion order: dev builds the checkout, the next
    environment builds the commit the previous one runs (the images workflow, then its pull request)."""
    by_env: dict[str, list[ImageStatus]] = {}
    for item in found:
        by_env.setdefault(item.environment, []).append(item)
    steps: list[str] = []
    previous: list[ImageStatus] | None = None
    for environment in (e.value for e in PROMOTION_ORDER):
        items = by_env.get(environment)
        if items is None:
            continue
        if environment == PROMOTION_ORDER[0].value:
            if any(i.state != "current" for i in items):
                steps.append(f"{environment}: gh workflow run images.yml -f environment={environment}")
        elif previous and all(i.commit for i in previous):
            source = previous[0].commit
            if any(i.commit != source for i in items):
                steps.append(f"{environment}: gh workflow run images.yml -f environment={environment} -f ref={source}")
        previous = items
    return steps

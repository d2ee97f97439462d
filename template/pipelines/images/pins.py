"""`mlops images pin`: pin a new build of the apps' images in an environment's stack file by pull
request (the same git-first path as a model promotion), and read the pins back.

A build is identified by its digest; what it was built from, by the commit and its *build context*
(`contexts.py`). Outside dev, a build is accepted only when its context is what the previous
environment runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from core.errors import BadInput
from infra.config import load_stack, project_name
from infra.naming import IMAGES
from infra.settings import PROMOTION_ORDER, Environment, ImagePin
from pipelines.common.git import TRAILER_ENV, TRAILER_KIND, Git, commit_branch, undone_if_interrupted
from pipelines.config.stackfiles import stack_path, validate_stack_text
from pipelines.containers.contexts import context_id
from pipelines.images.targets import cloud_settings

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
TRAILER_COMMIT = "Mlops-Image-Commit"


def trailer_of(image: str) -> str:
    return f"Mlops-Image-{image.capitalize()}"


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
    registry: str | None = None,
) -> PinRequest:
    """Commit the new digests to `stacks/Pulumi.<env>.yaml` on a branch from the remote's base, push it
    and open a pull request. Outside dev, the build must be of what the previous environment runs.
    The local stack's cluster pulls from a registry of the user's own (`registry`, `<host>/<path>`): its
    pins are full references `<registry>/<image>@<digest>`."""
    _validate_pin_input(root, environment, digests, source_commit, registry)
    git = Git(root)
    base_ref = git.start_change(remote, base)
    if not git.ok("cat-file", "-e", source_commit + "^{commit}"):
        raise BadInput(
            f"--commit {source_commit} is not in this clone", hint="fetch the history (actions/checkout fetch-depth: 0)"
        )
    path = stack_path(root, environment)
    text = git.show(base_ref, path)
    if text is None:
        raise BadInput(f"{base_ref} has no {path}: the {environment} environment does not exist there yet")
    project = project_name(root)
    previous = pins_in(text, project, f"{path} at {base_ref}")
    pins = {image: _pin(image, digests[image], source_commit, registry) for image in IMAGES}
    if all(previous[i] is not None and _source(previous[i]) == _source(pins[i]) for i in IMAGES):
        raise BadInput(f"{environment} already pins these digests on {base_ref}: nothing to change")
    if registry is None:
        _require_in_order(git, base_ref, environment, source_commit)
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
    before = ", ".join(f"{i} {(_source(p) or 'nothing')[-71:][:19]}" for i, p in previous.items())
    body = f"{environment} pinned {before}.\n\n{trailers}"
    with undone_if_interrupted(git, branch, remote):
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
            {i: _source(p) for i, p in previous.items()},
            branch,
            commit,
            pushed=push_branch,
        )
        from pipelines.release.promote import open_pull_request  # noqa: PLC0415 -- pulls in the registry client

        title_body = (subject, f"{body}\n\nThe `promote` workflow gates this change like any change of {path}.")
        open_pull_request(
            root, request, base=base, remote=remote, title_body=title_body, open_pr=open_pr and push_branch
        )
    return request


def _pin(image: str, digest: str, commit: str, registry: str | None) -> ImagePin:
    if registry is None:
        return ImagePin(digest=digest, commit=commit)
    return ImagePin(reference=f"{registry}/{image}@{digest}", commit=commit)


def _source(pin: ImagePin | None) -> str | None:
    return None if pin is None else pin.digest or pin.reference


def _validate_pin_input(
    root: Path, environment: str, digests: dict[str, str], source_commit: str, registry: str | None
) -> None:
    from pipelines.containers.builds import REGISTRY_PATH  # noqa: PLC0415

    known = [e.value for e in PROMOTION_ORDER]
    if environment == Environment.LOCAL.value:
        if registry is None:
            raise BadInput(
                "--registry is required for the local stack: the registry its cluster pulls from (<host>/<path>)"
            )
        if not REGISTRY_PATH.match(registry):
            raise BadInput(f"--registry must be <registry host[:port]>/<path> (got {registry!r})")
        load_stack(root, environment)
    elif environment not in known:
        raise BadInput(f"--env must be one of {', '.join([*known, Environment.LOCAL.value])} (got {environment!r})")
    elif registry is not None:
        raise BadInput(f"--registry is for the local stack only: {environment} pulls from its own registries")
    else:
        cloud_settings(root, environment)
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

"""The images' build contexts, read from git: the Dockerfile, `.dockerignore` and every path it COPYs,
so that a change elsewhere never makes an image stale.
"""

from __future__ import annotations

import hashlib
import io
import shlex

from dockerfile_parse import DockerfileParser

from infra.naming import IMAGES
from pipelines.common.git import Git

DOCKERFILES = {image: f"apps/{image}/Dockerfile" for image in IMAGES}


DOCKERIGNORE = ".dockerignore"


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

"""`mlops images build`: every app image built with podman, on the public bases when they can be pulled
and on locally made ones when not, optionally pushed to a registry (whose digest is what gets pinned).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import replace
from enum import StrEnum
from pathlib import Path

from core.errors import BadInput, EnvironmentProblem
from infra.config import project_name
from infra.naming import IMAGES
from pipelines.common.git import Git
from pipelines.containers import engine
from pipelines.containers.contexts import DOCKERFILES, context_paths, parse_dockerfile

REGISTRY_PATH = re.compile(r"^[a-z0-9.-]+(:\d{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")
LOOPBACK_REGISTRY = re.compile(r"^(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/")


class Base(StrEnum):
    AUTO = "auto"  # the public bases when they are here or can be pulled, else locally made ones
    PUBLIC = "public"
    LOCAL = "local"


def base_stages(dockerfile: str) -> dict[str, str]:
    """The named stages that are plain pinned images (`FROM <ref> AS <name>`): the public bases."""
    stages = {}
    for instruction in parse_dockerfile(dockerfile).structure:
        words = instruction["value"].split()
        named = instruction["instruction"] == "FROM" and len(words) == 3 and words[1].upper() == "AS"
        if named and "@sha256:" in words[0]:
            stages[words[2]] = words[0]
    return stages


def project_python(root: Path) -> str:
    """The Python of the images: the project's lowest supported version (requires-python)."""
    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    found = re.search(r">=\s*(3\.\d+)", spec)
    if found is None:
        raise BadInput(f"pyproject.toml: requires-python {spec!r} names no lower bound (>=3.X)")
    return found.group(1)


def choose_base(root: Path, base: Base, progress: Callable[[str], None]) -> tuple[str | None, str | None]:
    """(BASE, UV_IMAGE) build arguments: None, None builds on the Dockerfiles' own public bases."""
    if base is Base.AUTO:
        publics = {ref for image in IMAGES for ref in base_stages((root / DOCKERFILES[image]).read_text()).values()}
        missing = [ref for ref in sorted(publics) if not engine.exists(ref)]
        for ref in missing:
            progress(f"pulling {ref}")
            if not engine.pull(ref):
                progress("no registry can be reached: building on locally made bases")
                base = Base.LOCAL
                break
        else:
            base = Base.PUBLIC
    if base is Base.PUBLIC:
        return None, None
    return engine.local_base(project_python(root), progress), engine.local_uv()


def build_all(
    root: Path,
    images: Sequence[str] = IMAGES,
    *,
    base: Base = Base.AUTO,
    push_to: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[engine.Built]:
    """Build each image (tagged `localhost/<project>/<image>:<commit>`), and push it when asked."""
    unknown = [i for i in images if i not in IMAGES]
    if unknown:
        raise BadInput(f"--image must be one of {', '.join(IMAGES)} (got {', '.join(unknown)})")
    if push_to is not None and not REGISTRY_PATH.match(push_to):
        raise BadInput(f"--push must be <registry host[:port]>/<path> (got {push_to!r})")
    git = Git(root)
    git.require_repository()
    revision = git.commit_of("HEAD")
    dirty = bool(git.run("status", "--porcelain", "--", *_context_paths(git)).strip())
    tag = revision[:12] + ("-dirty" if dirty else "")
    project = project_name(root)
    names = {image: f"localhost/{project}/{image}:{tag}" for image in images}
    if not dirty and push_to is None and all(engine.exists(name) for name in names.values()):
        progress(f"the images of {revision[:12]} are built")  # a commit's context never changes
        return [engine.described(image, name, 0.0, "cached") for image, name in names.items()]
    base_image, uv_image = choose_base(root, base, progress)
    built = []
    for image in images:
        progress(f"building {image} on {base_image or 'the public base'}")
        result = engine.build(root, image, names[image], base=base_image, uv_image=uv_image, revision=revision)
        if push_to is not None:
            destination = f"{push_to}/{image}:{tag}"
            progress(f"pushing {image} to {destination}")
            digest = engine.push(result.tag, destination, tls_verify=not LOOPBACK_REGISTRY.match(push_to))
            result = replace(result, digest=digest, pushed_as=f"{push_to}/{image}@{digest}")
        built.append(result)
    return built


def _context_paths(git: Git) -> list[str]:
    paths = {p for image in IMAGES for p in (context_paths(git, "HEAD", image) or [])}
    if not paths:
        raise EnvironmentProblem("HEAD has no Dockerfiles under apps/: nothing to build")
    return sorted(paths)

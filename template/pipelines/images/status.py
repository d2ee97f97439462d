"""`mlops images status`: which build each environment pins, whether its build context changed since,
and the next steps in promotion order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from infra.config import list_stacks, load_stack
from infra.naming import IMAGES
from infra.settings import PROMOTION_ORDER, ImagePin, Settings
from pipelines.common.git import Git
from pipelines.containers.contexts import changes_since, context_id
from pipelines.images.targets import pulled_as


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

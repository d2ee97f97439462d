"""Where a build is pushed and pulled: each environment's registries (ECR, Artifact Registry) and the
names of one build in them.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import BadInput
from infra.config import load_stack, project_name
from infra.naming import IMAGES, artifact_registry_path, attestor_names, ecr_registry, ecr_repository
from infra.settings import Environment, ImagePin, Settings

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$")


def cloud_settings(root: Path, environment: str) -> Settings:
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
    settings = cloud_settings(root, environment)
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


def attestor(root: Path, environment: str) -> tuple[str, str]:
    """(attestor, KMS key version) a GCP stack's builds are attested with; ("", "") without GCP."""
    settings = cloud_settings(root, environment)
    if settings.gcp is None:
        return "", ""
    return attestor_names(settings.gcp.project, settings.gcp.region, project_name(root), environment)


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

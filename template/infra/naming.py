"""Pure naming, tagging, node-pool roles and address arithmetic shared by the components (no Pulumi resources)."""

from __future__ import annotations

import re
from ipaddress import IPv4Network

from infra.settings import NodePool, Settings

MANAGED_BY = "pulumi"
# The keys every taggable resource carries (AWS tags, GCP labels, Kubernetes labels alike).
TAG_KEYS = ("project", "environment", "owner", "cost-center", "managed-by")


def prefix(project: str, environment: str) -> str:
    """`<project>-<env>`: the stem of every physical name, so two stacks never collide."""
    return f"{project}-{environment}"


def tags(project: str, settings: Settings) -> dict[str, str]:
    """The tag set of a stack. Values are already valid GCP labels and Kubernetes label values."""
    return {
        "project": project,
        "environment": settings.environment.value,
        "owner": settings.tags.owner,
        "cost-center": settings.tags.cost_center,
        "managed-by": MANAGED_BY,
    }


# The images this repository builds (`apps/<name>/Dockerfile`), one registry repository each.
IMAGES = ("serving", "tracking")


def ecr_repository(project: str, environment: str, image: str) -> str:
    """The ECR repository of one image: `<project>-<env>/<image>` (the deploy role may write `<stem>/*`)."""
    return f"{prefix(project, environment)}/{image}"


def ecr_registry(account_id: str, region: str) -> str:
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com"


def artifact_repository(project: str, environment: str) -> str:
    """The Artifact Registry repository id that holds all the stack's images."""
    return gcp_name(prefix(project, environment), "apps", max_length=63)


def artifact_registry_path(region: str, gcp_project: str, project: str, environment: str) -> str:
    """`<region>-docker.pkg.dev/<project>/<repository>`: prefix of every image the stack pushes there."""
    return f"{region}-docker.pkg.dev/{gcp_project}/{artifact_repository(project, environment)}"


def key_ring(gcp_project: str, region: str, project: str, environment: str) -> str:
    """The resource name of the stack's Cloud KMS key ring (`cluster.Keys`)."""
    name = gcp_name(prefix(project, environment), "keys", max_length=63)
    return f"projects/{gcp_project}/locations/{region}/keyRings/{name}"


ATTESTOR_KEY = "attestor"  # the asymmetric signing key of the stack's Binary Authorization attestor


def attestor_names(gcp_project: str, region: str, project: str, environment: str) -> tuple[str, str]:
    """(attestor, key version) of a GCP stack's Binary Authorization attestor: what the images workflow
    signs each pushed digest as (`gcloud beta container binauthz attestations sign-and-create`)."""
    attestor = gcp_name(prefix(project, environment), "images", max_length=63)
    version = f"{key_ring(gcp_project, region, project, environment)}/cryptoKeys/{ATTESTOR_KEY}/cryptoKeyVersions/1"
    return f"projects/{gcp_project}/attestors/{attestor}", version


def gcp_name(*parts: str, max_length: int = 30) -> str:
    """A GCP resource id (`[a-z]([-a-z0-9]*[a-z0-9])?`) within `max_length`, made from `parts`."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)[:max_length].rstrip("-")
    if not name or not name[0].isalpha():
        raise ValueError(f"cannot make a GCP name from {parts!r}: it must start with a letter")
    return name


def availability_zones(region: str, count: int) -> list[str]:
    """The first `count` zones of an AWS region (every region the template offers has a, b and c)."""
    if not 1 <= count <= 3:
        raise ValueError(f"availability_zones must be 1-3 (got {count})")
    return [f"{region}{letter}" for letter in "abc"[:count]]


def subnet_layout(vpc_cidr: IPv4Network, zones: int) -> dict[str, list[IPv4Network]]:
    """Split a VPC into per-zone subnets: large private ones for nodes and pods, small public ones for NAT/LB.

    The VPC is cut in four quarters; private subnets take one quarter's worth each (first zones),
    public subnets are carved from the last quarter. A /16 gives /18 private and /22 public subnets.
    """
    if vpc_cidr.prefixlen > 24:
        raise ValueError(f"vpc_cidr {vpc_cidr} is too small: use a /24 or larger")
    quarters = list(vpc_cidr.subnets(prefixlen_diff=2))
    private = quarters[:zones]
    public = list(quarters[3].subnets(prefixlen_diff=4))[:zones]
    return {"private": private, "public": public}


# The taint and label that keep everything but training and batch jobs off the spot nodes (both clouds).
BATCH_TAINT = {"key": "workload", "value": "batch", "effect": "NO_SCHEDULE"}


def require_pool_roles(where: str, system: NodePool, spot: NodePool) -> None:
    """The system pool runs the platform on-demand; the spot pool is for interruptible work only."""
    if system.spot or not spot.spot:
        raise ValueError(f"{where}: the system pool must be on-demand and the spot pool spot")

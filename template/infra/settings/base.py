"""The enums, regions and field types every settings model builds on."""

from __future__ import annotations

import re
import types
from enum import StrEnum
from ipaddress import IPv4Network
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Frozen(BaseModel):
    """Every settings model: immutable, no unknown keys, and no silent conversion of a value's type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _types_as_written(cls, value: Any, info: ValidationInfo) -> Any:
        """A count, a pin or a switch is what the file says, never converted: `version: "3"` or
        `version: true` is refused (pydantic would read them as 3 and 1), and so is `enabled: "yes"`."""
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        wanted = _scalar_kinds(field.annotation)
        items = _scalar_kinds(_list_item(field.annotation))
        for item in value if isinstance(value, list) and items else [value]:
            _refuse_conversion(item, items if isinstance(value, list) and items else wanted)
        return value


class Environment(StrEnum):
    LOCAL = "local"
    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Cloud(StrEnum):
    AWS = "aws"
    GCP = "gcp"


# Models are promoted through these environments in this order; `local` is outside the chain.
PROMOTION_ORDER: tuple[Environment, ...] = (Environment.DEV, Environment.STAGING, Environment.PROD)


# The regions the template offers (and the cost model prices). copier.yml validates against the same lists.
AWS_REGIONS = ("us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")


GCP_REGIONS = (
    "us-central1",
    "us-east1",
    "us-west1",
    "europe-west1",
    "europe-west4",
    "asia-southeast1",
)


# CloudWatch accepts only these retention periods; GCP log buckets accept any, so one list serves both.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


OPEN_CIDR = IPv4Network("0.0.0.0/0")


IMAGE_REFERENCE = re.compile(
    r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$"
)


PRINCIPAL = re.compile(
    r"^(arn:aws:iam::\d{12}:(role|user)/[\w+=,.@/-]{1,512}"
    r"|(user|group):[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})$"
)


def _image_reference(value: str) -> str:
    if value.endswith(":latest"):
        raise ValueError(f"the `latest` tag is not allowed: pin a version tag or a @sha256 digest (got {value!r})")
    if not IMAGE_REFERENCE.match(value):
        raise ValueError(f"must be registry/repository:tag or registry/repository@sha256:<digest> (got {value!r})")
    return value


def _principal(value: str) -> str:
    if not PRINCIPAL.match(value):
        raise ValueError(
            "must be an AWS IAM role/user ARN (arn:aws:iam::<account>:role/<name>) "
            f"or a Google principal (user:<email> or group:<email>) (got {value!r})"
        )
    return value


GITHUB_REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}/[A-Za-z0-9._-]{1,100}$")


def github_repository_name(value: str) -> str:
    if not GITHUB_REPOSITORY.match(value) or value.endswith(("/.", "/..")):
        raise ValueError(f"must be owner/name of a GitHub repository (got {value!r})")
    return value


AwsRegion = Literal["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"]
GcpRegion = Literal["us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4", "asia-southeast1"]
Slug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", max_length=40)]
Label = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Email = Annotated[str, Field(pattern=r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")]
KubernetesVersion = Annotated[str, Field(pattern=r"^1\.\d{2}$")]
Quantity = Annotated[str, Field(pattern=r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")]

# A container image by tag or digest; `latest` (a moving target nobody reviewed) is refused.
ImageRef = Annotated[str, Field(max_length=400), AfterValidator(_image_reference)]
# Who may use the clusters: an IAM ARN (EKS access entry) or a Google `user:`/`group:` (GKE RBAC).
Principal = Annotated[str, AfterValidator(_principal)]

Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
CommitSha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]


def _scalar_kinds(annotation: Any) -> set[type]:
    """Which of int, float and bool an annotation wants (through Optional and unions), if any."""
    if annotation is None:
        return set()
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_scalar_kinds(arg) for arg in get_args(annotation)))
    if get_origin(annotation) is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    return {annotation} & {int, float, bool}


def _list_item(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is list and get_args(annotation) else None


def _refuse_conversion(value: Any, wanted: set[type]) -> None:
    if not wanted or value is None:
        return
    if bool in wanted and not isinstance(value, bool):
        raise ValueError(f"must be true or false, written without quotes (got {value!r})")
    if wanted & {int, float} and isinstance(value, (bool, str)):
        kind = "a whole number" if wanted & {int, float} == {int} else "a number"
        raise ValueError(f"must be {kind}, written without quotes (got {value!r})")
    if wanted & {int, float} == {int} and isinstance(value, float):
        raise ValueError(f"must be a whole number (got {value!r})")

"""Image rules: pinned tags and digests, the stack's own registries, signatures verified at admission
(sigstore policy-controller)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from infra.k8s.admission import INCLUDE_LABEL, POLICY_CONTROLLER_CHART, glob_matches
from policies.infra.rules import Context, Props, Resource, Rule, Severity, as_list, dig
from policies.infra.rules.kubernetes import WORKLOADS, containers, each_container

NAMESPACE = "kubernetes:core/v1:Namespace"
IMAGE_POLICY = "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ARTIFACT_REPOSITORY = "gcp:artifactregistry/repository:Repository"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
# Third-party images the apps run besides the stack's own (by digest too): infra/k8s/objects.py.
THIRD_PARTY_REPOSITORIES = ["docker.io/library/postgres", "quay.io/minio/minio", "quay.io/minio/mc"]


def _pinned_image(container: dict[str, Any], *_: Any) -> bool:
    image = str(container.get("image") or "")
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def _by_digest(props: Props, ctx: Context) -> Iterable[str]:
    for container in containers(props):
        image = str(container.get("image") or "")
        if not DIGEST.search(image):
            yield f"container {container.get('name')}: image {image!r} is not pinned by digest (@sha256:<64 hex>)"


def repository_of(image: str) -> str:
    """`host/path` of an image reference, without its tag and digest."""
    name = image.split("@", 1)[0]
    host, _, path = name.rpartition("/")
    return f"{host}/{path.split(':', 1)[0]}" if host else path.split(":", 1)[0]


def stack_registries(resources: list[Resource]) -> list[tuple[str, str]]:
    """(host, repository path) patterns of the registries this stack creates: each ECR repository (on
    any account's registry host: the name is the stack's), and any image in its Artifact Registry."""
    registries = []
    for resource in resources:
        props = resource.props
        if resource.type == ECR_REPOSITORY and props.get("name"):
            registries.append((ECR_HOST.pattern, re.escape(props["name"])))
        elif resource.type == ARTIFACT_REPOSITORY:
            host = re.escape(f"{props.get('location')}-docker.pkg.dev")
            project = re.escape(props["project"]) if props.get("project") else "[^/]+"
            registries.append((host, f"{project}/{re.escape(str(props.get('repositoryId')))}/.+"))
    return registries


def _from_registry(repository: str, registry: tuple[str, str]) -> bool:
    host_pattern, path_pattern = registry
    host, _, path = repository.partition("/")
    return bool(re.fullmatch(host_pattern, host)) and bool(re.fullmatch(path_pattern, path))


def _stack_registries_only(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    registries = stack_registries(resources)
    if not registries:
        return  # a stack without registries of its own (local): its cluster pulls from where you point it
    allowed = set(ctx.config.get("allowed_repositories", THIRD_PARTY_REPOSITORIES))
    for resource in resources:
        if resource.type not in WORKLOADS:
            continue
        for container in containers(resource.props):
            image = str(container.get("image") or "")
            repository = repository_of(image)
            if repository in allowed or any(_from_registry(repository, r) for r in registries):
                continue
            yield (
                resource.urn,
                f"{resource.name}: container {container.get('name')} image {image!r} is from neither this "
                "stack's registries nor an allowed third-party repository",
            )


def _keyless(authority: Any) -> bool:
    """A keyless authority that names who signed: every identity has an issuer and a subject."""
    identities = as_list(dig(authority, "keyless", "identities"))
    return bool(identities) and all(
        (identity.get("issuer") or identity.get("issuerRegExp"))
        and (identity.get("subject") or identity.get("subjectRegExp"))
        for identity in identities
    )


def _own_images(resource: Resource, registries: list[tuple[str, str]]) -> list[str]:
    images = [str(container.get("image") or "") for container in containers(resource.props)]
    return [image for image in images if any(_from_registry(repository_of(image), r) for r in registries)]


def _verified_admission(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    registries = stack_registries(resources)
    if not registries:
        return  # a stack without registries of its own (local): its images are not the workflow's to sign
    workloads = [(r, images) for r in resources if r.type in WORKLOADS and (images := _own_images(r, registries))]
    if not workloads:
        return
    controllers = [r for r in resources if r.type == HELM_RELEASE and r.props.get("chart") == POLICY_CONTROLLER_CHART]
    if not controllers:
        yield None, "the stack runs images of its registries, but no policy-controller verifies them at admission"
    elif not any(dig(r.props, "values", "webhook", "configData", "no-match-policy") == "deny" for r in controllers):
        yield controllers[0].urn, "the policy-controller admits images no policy matches (no-match-policy is not deny)"
    labels = {
        dig(r.props, "metadata", "name"): dig(r.props, "metadata", "labels") or {}
        for r in resources
        if r.type == NAMESPACE
    }
    policies = [r for r in resources if r.type == IMAGE_POLICY]
    unverified: set[str] = set()
    for resource, images in workloads:
        namespace = dig(resource.props, "metadata", "namespace") or "default"
        if labels.get(namespace, {}).get(INCLUDE_LABEL) != "true" and namespace not in unverified:
            unverified.add(namespace)
            yield resource.urn, f'namespace {namespace} is not verified at admission (label {INCLUDE_LABEL}: "true")'
        for image in images:
            matching = [
                policy
                for policy in policies
                if any(
                    glob_matches(str(entry.get("glob")), image)
                    for entry in as_list(dig(policy.props, "spec", "images"))
                )
            ]
            if not matching:
                yield resource.urn, f"{resource.name}: image {image!r} matches no ClusterImagePolicy of the stack"
            for policy in matching:
                authorities = as_list(dig(policy.props, "spec", "authorities"))
                if not authorities or not all(_keyless(authority) for authority in authorities):
                    yield (
                        policy.urn,
                        f"{resource.name}: ClusterImagePolicy {dig(policy.props, 'metadata', 'name')} admits image "
                        f"{image!r} without a keyless signature of a named identity",
                    )


RULES = [
    Rule(
        "kubernetes-apps-deployment-disallow-latest-tag",
        "An image without a pinned tag (or `latest`) changes under you: what runs is not what was reviewed.",
        Severity.HIGH,
        "Reference images by a version tag or, better, by digest.",
        WORKLOADS,
        check=each_container(_pinned_image, "image is not pinned (no tag, or `latest`)"),
    ),
    Rule(
        "kubernetes-apps-workload-configure-image-digest",
        "A tag can be moved to other content; a digest is the content: what runs is exactly what was built.",
        Severity.HIGH,
        "Pin images as <registry>/<repository>@sha256:<digest> (the images workflow pins the stack's own).",
        WORKLOADS,
        check=_by_digest,
    ),
    Rule(
        "kubernetes-apps-workload-disallow-foreign-registry",
        "Images from registries the stack does not own bypass its scanning, retention and pull permissions.",
        Severity.HIGH,
        "Push the image to the stack's registry (the images workflow does), or list a vetted third-party "
        "repository in allowed_repositories.",
        stack_check=_stack_registries_only,
        config_defaults={"allowed_repositories": THIRD_PARTY_REPOSITORIES},
    ),
    Rule(
        "kubernetes-sigstore-clusterimagepolicy-enable-signature-verification",
        "A digest says what an image is, not who built it: without verification at admission, anyone who can "
        "push to the registry can run code in the cluster.",
        Severity.HIGH,
        "Keep images.verify_signatures: true: the stack deploys the sigstore policy-controller, labels the app "
        "namespace and admits only images its images workflow signed keylessly (infra/k8s/admission.py).",
        stack_check=_verified_admission,
    ),
]

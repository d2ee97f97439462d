"""Kubernetes rules: pod hardening, resources, probes, images, exposure, NetworkPolicies, disruption budgets,
gated canaries (Argo Rollouts)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from infra.k8s.admission import INCLUDE_LABEL, POLICY_CONTROLLER_CHART, glob_matches
from policies.infra.rules import Context, Props, Resource, Rule, Severity, as_list, dig

ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"
ANALYSIS_TEMPLATE = "kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"
LONG_RUNNING = (
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    ROLLOUT,  # an Argo Rollouts Rollout carries a pod template like a Deployment's
)
WORKLOADS = (*LONG_RUNNING, "kubernetes:batch/v1:Job", "kubernetes:batch/v1:CronJob")
MAX_FIRST_WEIGHT = 25
ALLOW_LOAD_BALANCER = "mlops/allow-load-balancer"
NAMESPACE = "kubernetes:core/v1:Namespace"
IMAGE_POLICY = "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
ECR_REPOSITORY = "aws:ecr/repository:Repository"
ARTIFACT_REPOSITORY = "gcp:artifactregistry/repository:Repository"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com$")
# Third-party images the apps run besides the stack's own (by digest too): infra/k8s/objects.py.
THIRD_PARTY_REPOSITORIES = ["docker.io/library/postgres", "quay.io/minio/minio", "quay.io/minio/mc"]


def _pod(props: Props) -> dict[str, Any]:
    return dig(props, "spec", "template", "spec") or dig(props, "spec", "jobTemplate", "spec", "template", "spec") or {}


def _containers(props: Props) -> list[dict[str, Any]]:
    pod = _pod(props)
    return [*as_list(pod.get("initContainers")), *as_list(pod.get("containers"))]


def _each_container(test: Any, message: str):
    def check(props: Props, ctx: Context) -> Iterable[str]:
        pod_security = _pod(props).get("securityContext") or {}
        for container in _containers(props):
            if not test(container, container.get("securityContext") or {}, pod_security):
                yield f"container {container.get('name')}: {message}"

    return check


def _limits(container: dict[str, Any], *_: Any) -> bool:
    resources = container.get("resources") or {}
    return {"cpu", "memory"} <= set(resources.get("requests") or {}) and "memory" in (resources.get("limits") or {})


def _non_root(container: dict[str, Any], security: dict[str, Any], pod: dict[str, Any]) -> bool:
    non_root = security.get("runAsNonRoot", pod.get("runAsNonRoot"))
    user = security.get("runAsUser", pod.get("runAsUser"))
    return non_root is True and user not in (0, 0.0)


def _host_namespaces(props: Props, ctx: Context) -> Iterable[str]:
    pod = _pod(props)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            yield f"pod uses {field}"
    for container in _containers(props):
        if (container.get("securityContext") or {}).get("privileged"):
            yield f"container {container.get('name')} is privileged"


def _probes(props: Props, ctx: Context) -> Iterable[str]:
    for container in as_list(_pod(props).get("containers")):
        missing = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
        if missing:
            yield f"container {container.get('name')} has no {' or '.join(missing)}"


def _pinned_image(container: dict[str, Any], *_: Any) -> bool:
    image = str(container.get("image") or "")
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def _by_digest(props: Props, ctx: Context) -> Iterable[str]:
    for container in _containers(props):
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
        for container in _containers(resource.props):
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
    images = [str(container.get("image") or "") for container in _containers(resource.props)]
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


def _load_balancer(props: Props, ctx: Context) -> Iterable[str]:
    if dig(props, "spec", "type") != "LoadBalancer":
        return
    annotations = dig(props, "metadata", "annotations") or {}
    if annotations.get(ALLOW_LOAD_BALANCER) != "true":
        yield f'Service of type LoadBalancer without the annotation {ALLOW_LOAD_BALANCER}: "true"'


def _disruption(props: Props, ctx: Context) -> Iterable[str]:
    spec = props.get("spec") or {}
    if spec.get("maxUnavailable") in (0, 0.0, "0%"):
        yield "maxUnavailable 0 blocks every node drain and upgrade"
    if spec.get("minAvailable") == "100%":
        yield "minAvailable 100% blocks every node drain and upgrade"


def _namespace_policies(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    namespaces_with_workloads: dict[str, str] = {}
    for resource in resources:
        if resource.type in WORKLOADS:
            namespace = dig(resource.props, "metadata", "namespace") or "default"
            namespaces_with_workloads.setdefault(namespace, resource.urn)
    covered = {
        dig(r.props, "metadata", "namespace") or "default"
        for r in resources
        if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    }
    exempt = set(ctx.config.get("exempt_namespaces", ["monitoring", "kube-system"]))
    for namespace, urn in sorted(namespaces_with_workloads.items()):
        if namespace not in covered and namespace not in exempt:
            yield urn, f"namespace {namespace} runs workloads but has no NetworkPolicy"


def _canary(props: Props) -> dict[str, Any]:
    return dig(props, "spec", "strategy", "canary") or {}


def _analysis_names(canary: dict[str, Any]) -> list[str]:
    """AnalysisTemplates a canary runs: in the background, or as steps."""
    names = [str(t.get("templateName")) for t in as_list(dig(canary, "analysis", "templates"))]
    for step in as_list(canary.get("steps")):
        names += [str(t.get("templateName")) for t in as_list(dig(step, "analysis", "templates"))]
    return names


def _gated_rollout(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    templates = {
        (dig(r.props, "metadata", "namespace") or "default", dig(r.props, "metadata", "name"))
        for r in resources
        if r.type == ANALYSIS_TEMPLATE
    }
    for resource in resources:
        if resource.type != ROLLOUT:
            continue
        canary = _canary(resource.props)
        if not canary:
            yield resource.urn, "the Rollout has no canary strategy: a new version takes all traffic at once"
            continue
        names = _analysis_names(canary)
        if not names:
            yield resource.urn, "the canary runs no analysis: nothing stops a failing version from taking all traffic"
        namespace = dig(resource.props, "metadata", "namespace") or "default"
        for name in names:
            if (namespace, name) not in templates:
                yield (
                    resource.urn,
                    f"the canary's analysis {name!r} is no AnalysisTemplate of this stack in {namespace}",
                )


def _first_step(props: Props, ctx: Context) -> Iterable[str]:
    limit = int(ctx.config.get("max_first_weight", MAX_FIRST_WEIGHT))
    weights = [step.get("setWeight") for step in as_list(_canary(props).get("steps")) if "setWeight" in step]
    if not weights:
        yield "the canary has no setWeight step: the new version takes all traffic at once"
    elif int(weights[0]) > limit:
        yield f"the first canary step sends {weights[0]} % of traffic to the new version; at most {limit} %"


RULES = [
    Rule(
        "kubernetes-apps-deployment-enable-resource-limits",
        "Pods without requests cannot be scheduled sensibly; without a memory limit one pod can starve a node.",
        Severity.MEDIUM,
        "Set resources.requests (cpu, memory) and resources.limits.memory on every container.",
        WORKLOADS,
        check=_each_container(_limits, "no cpu/memory requests or no memory limit"),
    ),
    Rule(
        "kubernetes-apps-deployment-configure-non-root",
        "A container running as root turns a container escape into root on the node.",
        Severity.HIGH,
        "Set securityContext.runAsNonRoot=true and a non-zero runAsUser.",
        WORKLOADS,
        check=_each_container(_non_root, "may run as root"),
    ),
    Rule(
        "kubernetes-apps-deployment-enable-read-only-root",
        "A read-only root filesystem stops an intruder from changing the container's code.",
        Severity.MEDIUM,
        "Set securityContext.readOnlyRootFilesystem=true; mount emptyDir volumes where the app writes.",
        WORKLOADS,
        check=_each_container(lambda c, s, p: s.get("readOnlyRootFilesystem") is True, "root filesystem is writable"),
    ),
    Rule(
        "kubernetes-apps-deployment-disallow-privilege-escalation",
        "setuid binaries must not be able to gain privileges inside the container.",
        Severity.HIGH,
        "Set securityContext.allowPrivilegeEscalation=false.",
        WORKLOADS,
        check=_each_container(
            lambda c, s, p: s.get("allowPrivilegeEscalation") is False, "privilege escalation allowed"
        ),
    ),
    Rule(
        "kubernetes-apps-deployment-disallow-host-access",
        "Privileged containers and host namespaces give a pod the node.",
        Severity.CRITICAL,
        "Remove privileged, hostNetwork, hostPID and hostIPC.",
        WORKLOADS,
        check=_host_namespaces,
    ),
    Rule(
        "kubernetes-apps-deployment-enable-probes",
        "Without probes, traffic reaches pods that are not ready and hung pods are never restarted.",
        Severity.MEDIUM,
        "Add readinessProbe and livenessProbe to every long-running container.",
        LONG_RUNNING,
        check=_probes,
    ),
    Rule(
        "kubernetes-apps-deployment-disallow-latest-tag",
        "An image without a pinned tag (or `latest`) changes under you: what runs is not what was reviewed.",
        Severity.HIGH,
        "Reference images by a version tag or, better, by digest.",
        WORKLOADS,
        check=_each_container(_pinned_image, "image is not pinned (no tag, or `latest`)"),
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
    Rule(
        "kubernetes-core-service-disallow-load-balancer",
        "A LoadBalancer Service exposes an app outside the cluster, often to the internet.",
        Severity.HIGH,
        f'Use ClusterIP (and an ingress you control), or annotate the Service {ALLOW_LOAD_BALANCER}: "true".',
        ("kubernetes:core/v1:Service",),
        check=_load_balancer,
    ),
    Rule(
        "kubernetes-policy-poddisruptionbudget-configure-allowed-disruption",
        "A PDB that allows no disruption blocks node upgrades and scale-down forever.",
        Severity.LOW,
        "Use maxUnavailable: 1 (or a minAvailable below the replica count).",
        ("kubernetes:policy/v1:PodDisruptionBudget",),
        check=_disruption,
    ),
    Rule(
        "kubernetes-argoproj-rollout-enable-canary-analysis",
        "A canary without analysis is only a slower big-bang: nothing measures the new version before it "
        "takes all traffic.",
        Severity.HIGH,
        "Give the Rollout a canary strategy whose analysis (background or steps) names an AnalysisTemplate "
        "of the stack (infra/k8s/rollout.py does).",
        stack_check=_gated_rollout,
    ),
    Rule(
        "kubernetes-argoproj-rollout-configure-bounded-first-step",
        "The first canary step is what a bad version reaches before any analysis has judged it.",
        Severity.HIGH,
        f"Start serving.canary.steps with a weight of at most {MAX_FIRST_WEIGHT} % (max_first_weight).",
        (ROLLOUT,),
        check=_first_step,
        config_defaults={"max_first_weight": MAX_FIRST_WEIGHT},
    ),
    Rule(
        "kubernetes-networking-namespace-enable-network-policy",
        "Without a NetworkPolicy every pod can reach every other pod in the cluster.",
        Severity.MEDIUM,
        "Add a default-deny NetworkPolicy and the allow rules the apps need.",
        stack_check=_namespace_policies,
        config_defaults={"exempt_namespaces": ["monitoring", "kube-system"]},
    ),
]

"""Kubernetes rules: pod hardening, resources, probes, exposure, NetworkPolicies, disruption budgets,
gated canaries (Argo Rollouts). The images' rules (pins, registries, signatures) are in `images`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

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


def _pod(props: Props) -> dict[str, Any]:
    return dig(props, "spec", "template", "spec") or dig(props, "spec", "jobTemplate", "spec", "template", "spec") or {}


def containers(props: Props) -> list[dict[str, Any]]:
    pod = _pod(props)
    return [*as_list(pod.get("initContainers")), *as_list(pod.get("containers"))]


def each_container(test: Any, message: str):
    def check(props: Props, ctx: Context) -> Iterable[str]:
        pod_security = _pod(props).get("securityContext") or {}
        for container in containers(props):
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
    for container in containers(props):
        if (container.get("securityContext") or {}).get("privileged"):
            yield f"container {container.get('name')} is privileged"


def _probes(props: Props, ctx: Context) -> Iterable[str]:
    for container in as_list(_pod(props).get("containers")):
        missing = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
        if missing:
            yield f"container {container.get('name')} has no {' or '.join(missing)}"


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
        check=each_container(_limits, "no cpu/memory requests or no memory limit"),
    ),
    Rule(
        "kubernetes-apps-deployment-configure-non-root",
        "A container running as root turns a container escape into root on the node.",
        Severity.HIGH,
        "Set securityContext.runAsNonRoot=true and a non-zero runAsUser.",
        WORKLOADS,
        check=each_container(_non_root, "may run as root"),
    ),
    Rule(
        "kubernetes-apps-deployment-enable-read-only-root",
        "A read-only root filesystem stops an intruder from changing the container's code.",
        Severity.MEDIUM,
        "Set securityContext.readOnlyRootFilesystem=true; mount emptyDir volumes where the app writes.",
        WORKLOADS,
        check=each_container(lambda c, s, p: s.get("readOnlyRootFilesystem") is True, "root filesystem is writable"),
    ),
    Rule(
        "kubernetes-apps-deployment-disallow-privilege-escalation",
        "setuid binaries must not be able to gain privileges inside the container.",
        Severity.HIGH,
        "Set securityContext.allowPrivilegeEscalation=false.",
        WORKLOADS,
        check=each_container(
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

"""The apps' Kubernetes objects: schema-valid, hardened, and serving exactly the version pinned in git."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from infra.config import load_stack
from infra.k8s import apps, dashboard, platform, serving, tracking
from infra.k8s.objects import Obj
from pipelines.plan.graph import Plan, PlannedResource
from pipelines.plan.mocks import SECRET
from tests.conftest import ROOT
from tests.infra.crds import validate_custom
from tests.planning import PROJECT, containers, key, stack_images

KUBERNETES_VERSION = "1.33.0"
WORKLOADS = (
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:batch/v1:Job",
    "kubernetes:argoproj.io/v1alpha1:Rollout",
)


def app_objects(stack: str) -> list[Obj]:
    settings = load_stack(ROOT, stack)
    tags = {"project": PROJECT, "environment": stack, "owner": "o", "cost-center": "c", "managed-by": "pulumi"}
    ctx = apps.AppContext(
        namespace=PROJECT,
        environment=stack,
        tags=tags,
        artifacts_uri="s3://bucket/mlflow",
        s3_endpoint="http://minio:9000",
    )
    objects = tracking.tracking_objects(ctx, settings.tracking, settings.images.tracking)
    objects += tracking.postgres_objects(ctx, settings.tracking)
    image = "registry.example/serving@sha256:" + "a" * 64  # the stack files pin none yet
    objects += serving.serving_objects(ctx, settings.serving, image, tracking_auth=True, monitoring=settings.monitoring)
    objects.append(serving.drift_cronjob(ctx, settings.monitoring, settings.images.serving, tracking_auth=True))
    objects.append(dashboard.dashboard_config_map(PROJECT, tags, settings.monitoring))
    objects += tracking.minio_objects(ctx, "bucket")
    objects.append(tracking.users_job(ctx, "registry.example/tracking@sha256:" + "b" * 64))
    objects += [platform.namespace(PROJECT, tags), *platform.network_policies(PROJECT, tags, minio=True)]
    objects += platform.rbac_objects(PROJECT, tags, PROJECT, {})
    return objects


@pytest.mark.parametrize("stack", ["local", "prod"])
def test_objects_are_valid_kubernetes(stack: str) -> None:
    kinds = set()
    for obj in app_objects(stack):
        kinds.add(obj["kind"])
        if obj["apiVersion"].startswith("argoproj.io/"):
            validate_custom(obj)  # against the pinned chart's CRD schema (tests/infra/crds.py)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert {"Rollout", "AnalysisTemplate"} <= kinds


def test_a_misspelled_field_is_caught_by_the_schema_check() -> None:
    deployment = next(o for o in app_objects("local") if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def workloads(plan: Plan) -> list[PlannedResource]:
    return [r for t in WORKLOADS for r in plan.of_type(t)]


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_every_container_is_hardened_and_limited(plans: dict[str, Plan], stack: str) -> None:
    found = workloads(plans[stack])
    assert len(found) >= 3
    for workload in found:
        pod = workload.inputs["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["fsGroup"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("hostNetwork") is None and pod.get("hostPID") is None
        # None of our pods calls the Kubernetes API (IRSA's webhook mounts its own token).
        assert pod["automountServiceAccountToken"] is False, workload.name
        for container in pod["containers"]:
            where = f"{stack}: {workload.name}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsUser"] >= 10000 and security["seccompProfile"]["type"] == "RuntimeDefault", where
            assert not any("valueFrom" in e and "secretKeyRef" in e["valueFrom"] for e in container.get("env", []))
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["privileged"] is False and security["capabilities"]["drop"] == ["ALL"], where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
            assert not container["image"].endswith(":latest") and ":" in container["image"].rsplit("/", 1)[-1], where
            if workload.type != "kubernetes:batch/v1:Job":
                assert "readinessProbe" in container and "livenessProbe" in container, where


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_serving_deployment_follows_the_stack_file(plans: dict[str, Plan], stack: str) -> None:
    settings = load_stack(ROOT, stack)
    for deployment in plans[stack].of_type("kubernetes:apps/v1:Deployment"):
        if deployment.inputs["metadata"]["name"] != apps.SERVING:
            continue
        (container,) = containers(deployment)
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["MODEL_NAME"] == f"{stack}.{settings.serving.model.name}"
        assert "MODEL_VERSION" not in env  # nothing pinned in the default stacks yet
        assert container["image"] in stack_images(plans[stack], "serving")
        assert container["resources"]["requests"] == {"cpu": settings.serving.cpu, "memory": settings.serving.memory}


def test_pinned_model_version_reaches_every_serving_deployment(plan_with: Any) -> None:
    def pin(config: dict[str, Any]) -> None:
        config[key("serving")]["model"]["version"] = 7

    plan = plan_with("prod", pin)
    deployments = [d for d in plan.of_type(WORKLOADS[-1]) if d.inputs["metadata"]["name"] == apps.SERVING]
    assert len(deployments) == max(1, len(plan.clouds))
    for deployment in deployments:
        env = {e["name"]: e.get("value") for e in containers(deployment)[0]["env"]}
        assert env["MODEL_VERSION"] == "7"
        assert deployment.inputs["spec"]["template"]["metadata"]["annotations"]["mlops/model-version"] == "7"


@pytest.mark.parametrize("stack", ["local", "prod"])
def test_namespace_network_and_disruption_guards(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    namespaces = {
        n.inputs["metadata"]["name"]: n.inputs["metadata"]["labels"]
        for n in plan.of_type("kubernetes:core/v1:Namespace")
    }
    assert namespaces[PROJECT]["pod-security.kubernetes.io/enforce"] == "restricted"
    policies = [
        p
        for p in plan.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if p.inputs["metadata"]["namespace"] == PROJECT
    ]
    deny = next(p for p in policies if p.inputs["metadata"]["name"] == "default-deny")
    assert deny.inputs["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for budget in plan.of_type("kubernetes:policy/v1:PodDisruptionBudget"):
        assert budget.inputs["spec"]["maxUnavailable"] == 1.0  # numbers reach the engine as floats
    services = plan.of_type("kubernetes:core/v1:Service")
    assert services and all(s.inputs["spec"]["type"] == "ClusterIP" for s in services)
    settings = load_stack(ROOT, stack).serving
    autoscalers = plan.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    assert len(autoscalers) == max(1, len(plan.clouds))
    for hpa in autoscalers:
        assert hpa.inputs["spec"]["maxReplicas"] == settings.max_replicas
        assert hpa.inputs["spec"]["minReplicas"] == max(1, settings.min_replicas)


def test_tracking_server_has_auth_database_and_secrets(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    tracking = next(
        d for d in plan.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == apps.TRACKING
    )
    command = containers(tracking)[0]["command"]
    assert "--app-name=basic-auth" in command and "--serve-artifacts" in command
    destination = command[command.index("--artifacts-destination") + 1]
    assert destination.startswith(("s3://", "gs://")) and destination.endswith("/mlflow")
    assert any(s.inputs["metadata"]["name"] == apps.POSTGRES for s in plan.of_type("kubernetes:apps/v1:StatefulSet"))
    secrets = plan.of_type("kubernetes:core/v1:Secret")
    assert {s.inputs["metadata"]["name"] for s in secrets} >= {
        apps.DB_SECRET,
        apps.AUTH_SECRET,
        apps.SERVING_CREDENTIALS,
    }
    assert all(s.inputs["stringData"] == SECRET for s in secrets)  # generated passwords travel as Pulumi secrets
    assert {apps.DRIFT_CREDENTIALS, apps.ADMIN_CREDENTIALS} <= {s.inputs["metadata"]["name"] for s in secrets}


def _secrets_used(inputs: dict[str, Any]) -> set[str]:
    spec = inputs["spec"]
    pod = (spec.get("jobTemplate", {}).get("spec") or spec)["template"]["spec"]
    names = {v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
    for container in pod["containers"]:
        names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
    return names


def test_each_app_signs_in_to_mlflow_as_itself(plans: dict[str, Plan]) -> None:
    """Serving and drift use their own users (made by the users Job); only that Job holds the admin's."""
    plan = plans["prod"]
    workloads = {
        (r.inputs["metadata"]["name"], r.name.split("-", 1)[0]): r
        for type_ in (
            "kubernetes:argoproj.io/v1alpha1:Rollout",
            "kubernetes:batch/v1:CronJob",
            "kubernetes:batch/v1:Job",
        )
        for r in plan.of_type(type_)
    }
    for cluster in plan.clouds:
        assert apps.SERVING_CREDENTIALS in _secrets_used(workloads[(apps.SERVING, cluster)].inputs)
        assert apps.DRIFT_CREDENTIALS in _secrets_used(workloads[(apps.DRIFT, cluster)].inputs)
        job = workloads[(apps.USERS_JOB, cluster)]
        assert _secrets_used(job.inputs) == {apps.ADMIN_CREDENTIALS, apps.SERVING_CREDENTIALS, apps.DRIFT_CREDENTIALS}
        assert any(d.endswith(f"::{cluster}-apps-tracking-deployment-{apps.TRACKING}") for d in job.dependencies)
    pods = [
        r for r in plan.resources if r.type.split(":")[-1] in ("Deployment", "StatefulSet", "Rollout", "Job", "CronJob")
    ]
    holders = {r.inputs["metadata"]["name"] for r in pods if apps.ADMIN_CREDENTIALS in _secrets_used(r.inputs)}
    assert holders == {apps.USERS_JOB}


def test_external_database_replaces_postgres(plan_with: Any) -> None:
    def external(config: dict[str, Any]) -> None:
        config[key("tracking")]["database"] = "external"
        config[key("tracking")]["external_database_host"] = "db.internal.example"

    plan = plan_with("local", external)
    assert not plan.of_type("kubernetes:apps/v1:StatefulSet")
    tracking = next(
        d for d in plan.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == apps.TRACKING
    )
    assert (
        "--backend-store-uri=postgresql://mlflow@db.internal.example:5432/mlflow" in containers(tracking)[0]["command"]
    )


def test_monitoring_release_rules_and_people_rbac(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    release = plan.of_type("kubernetes:helm.sh/v3:Release")
    charts = {r.inputs["chart"]: r.inputs["version"] for r in release}
    assert set(charts) == {"kube-prometheus-stack", "argo-rollouts", "policy-controller"} and all(charts.values())
    assert len(release) == 3 * len(plan.clouds), "the three charts on every cluster"
    rules = [r for r in plan.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")]
    alerts = {rule["alert"] for r in rules for group in r.inputs["spec"]["groups"] for rule in group["rules"]}
    assert alerts == {"ServingErrorRateHigh", "ServingLatencyP95High", "ModelInputDrift"}
    assert plan.of_type("kubernetes:monitoring.coreos.com/v1:ServiceMonitor")
    roles = {
        r.inputs["metadata"]["name"]: r.inputs["rules"]
        for r in plan.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    }
    read_only = {verb for rule in roles[platform.DATA_SCIENTISTS] for verb in rule["verbs"]}
    assert read_only == {"get", "list", "watch"}
    assert not any("secrets" in rule["resources"] for rules_ in roles.values() for rule in rules_)


def test_alert_expressions_use_the_stack_thresholds() -> None:
    monitoring = load_stack(ROOT, "prod").monitoring
    expressions = platform.alert_expressions("ns", monitoring)
    assert expressions["ServingLatencyP95High"].endswith(f"> {monitoring.p95_latency_ms / 1000:g}")
    assert 'model_responses_total{namespace="ns",code=~"5.."}' in expressions["ServingErrorRateHigh"]
    assert expressions["ModelInputDrift"].endswith(f">= {monitoring.drift_threshold:g}")

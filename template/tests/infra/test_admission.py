"""Signature verification at admission as data: the policy-controller's values and the stack's
ClusterImagePolicies are valid against the pinned chart's schemas, cover exactly the images the stacks
run, name the images workflow on main as the only signer, and come before any app pod."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest

from infra.config import load_stack
from infra.k8s import admission
from infra.k8s.objects import POSTGRES_IMAGE
from infra.settings import Settings
from pipelines.plan.graph import Plan
from pipelines.plan.policy import check_plan
from policies.infra.rules.kubernetes import WORKLOADS
from tests.conftest import ROOT
from tests.infra.crds import validate_custom, validate_policy_controller_values
from tests.planning import key

POLICY = "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy"
RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
DIGEST = "sha256:" + "b" * 64
ECR_IMAGE = f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/p-dev/serving@{DIGEST}"
TAGS = {"project": "p", "environment": "dev"}


def made() -> dict[str, Any]:
    globs = [admission.repository_glob(ECR_IMAGE)]
    return {o["metadata"]["name"]: o for o in admission.image_policies("p", globs, "acme/platform", TAGS)}


def test_policies_and_values_are_valid_against_the_pinned_chart() -> None:
    for policy in made().values():
        validate_custom(policy)
    validate_policy_controller_values(
        admission.controller_values({"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"})
    )


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("spec", "authorities", 0, "keyless", "identitees"), [], "Additional properties"),
        (("spec", "images", 0, "glob"), 7, "is not of type 'string'"),
    ],
)
def test_the_crd_schema_catches_a_bad_field(path: tuple[Any, ...], value: Any, complaint: str) -> None:
    policy = copy.deepcopy(made()["p-app-images"])
    target = policy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError, match=complaint):
        validate_custom(policy)


def test_the_values_schema_catches_a_bad_value() -> None:
    values = admission.controller_values({})
    values["webhook"]["replicaCount"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        validate_policy_controller_values(values)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("postgres:17", "index.docker.io/library/postgres:17"),
        (f"docker.io/library/postgres:17.6@{DIGEST}", f"index.docker.io/library/postgres@{DIGEST}"),
        ("acme/app", "index.docker.io/acme/app:latest"),
        (f"quay.io/minio/minio:RELEASE.2025@{DIGEST}", f"quay.io/minio/minio@{DIGEST}"),
        (f"127.0.0.1:5000/p/serving@{DIGEST}", f"127.0.0.1:5000/p/serving@{DIGEST}"),
        ("localhost/p/serving:abc", "localhost/p/serving:abc"),
    ],
)
def test_references_are_read_as_the_controller_reads_them(image: str, expected: str) -> None:
    assert admission.normalized(image) == expected


def test_globs_cover_a_repository_digests_only() -> None:
    glob = admission.repository_glob(ECR_IMAGE)
    assert glob == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/p-dev/serving@sha256:*"
    assert admission.glob_matches(glob, ECR_IMAGE.replace("b" * 64, "c" * 64))
    assert not admission.glob_matches(glob, ECR_IMAGE.replace("/serving@", "/serving-x@"))
    assert not admission.glob_matches(glob, ECR_IMAGE.replace("/p-dev/", "/other/"))
    assert not admission.glob_matches(glob, ECR_IMAGE.split("@", maxsplit=1)[0] + ":latest"), "a tag is no digest"
    reviewed = admission.normalized(POSTGRES_IMAGE)
    assert admission.glob_matches(reviewed, POSTGRES_IMAGE)
    assert not admission.glob_matches(reviewed, POSTGRES_IMAGE.replace(POSTGRES_IMAGE[-64:], "0" * 64))


def test_only_the_images_workflow_on_main_signs_and_others_pass_as_reviewed_digests() -> None:
    policies = made()
    (authority,) = policies["p-app-images"]["spec"]["authorities"]
    assert authority["keyless"]["identities"] == [
        {
            "issuer": "https://token.actions.githubusercontent.com",
            "subject": "https://github.com/acme/platform/.github/workflows/images.yml@refs/heads/main",
        }
    ]
    third_party = policies["p-third-party"]["spec"]
    assert third_party["authorities"] == [{"name": "reviewed-digest", "static": {"action": "pass"}}]
    assert all("@sha256:" in entry["glob"] and "*" not in entry["glob"] for entry in third_party["images"])
    assert admission.controller_values({})["webhook"]["configData"] == {"no-match-policy": "deny"}


def _containers(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of a workload's pod template (a CronJob's is under its jobTemplate)."""
    spec = inputs["spec"]
    pod = (spec.get("jobTemplate", {}).get("spec") or spec)["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def _admitted_by(plan: Plan, cluster: str, image: str) -> list[dict[str, Any]]:
    """The policies of one cluster (`aws`/`gcp`: each cloud's resources are named after it) matching an image."""
    return [
        policy.inputs
        for policy in plan.of_type(POLICY)
        if policy.name.startswith(f"{cluster}-")
        and any(admission.glob_matches(entry["glob"], image) for entry in policy.inputs["spec"]["images"])
    ]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_pod_of_a_cloud_stack_is_covered_by_exactly_one_policy(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    settings = load_stack(ROOT, stack)
    assert settings.github is not None
    signer = admission.signer_subject(settings.github.repository)
    workloads = [r for type_ in WORKLOADS for r in plan.of_type(type_)]
    assert {"kubernetes:batch/v1:CronJob", "kubernetes:apps/v1:StatefulSet"} <= {r.type for r in workloads}
    for workload in workloads:
        for container in _containers(workload.inputs):
            (policy,) = _admitted_by(plan, workload.name.split("-", 1)[0], container["image"])
            authorities = policy["spec"]["authorities"]
            if container["image"] in admission.THIRD_PARTY_IMAGES:
                assert authorities[0]["static"] == {"action": "pass"}
            else:
                assert authorities[0]["keyless"]["identities"][0]["subject"] == signer
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"] for r in plan.of_type(NAMESPACE)}
    assert namespaces[workloads[0].inputs["metadata"]["namespace"]][admission.INCLUDE_LABEL] == "true"
    assert admission.INCLUDE_LABEL not in namespaces[admission.POLICY_CONTROLLER_NAMESPACE], "never its own webhook"


def test_the_webhook_and_its_policies_come_before_the_apps(plans: dict[str, Plan]) -> None:
    plan = plans["prod"]
    verifiers = {r.urn: r for r in plan.resources if r.type == "mlops:k8s:ImageAdmission"}
    assert len(verifiers) == len(plan.clouds)
    releases = [r for r in plan.of_type(RELEASE) if r.inputs["chart"] == admission.POLICY_CONTROLLER_CHART]
    assert {r.inputs["version"] for r in releases} == {admission.POLICY_CONTROLLER_VERSION}
    for release in releases:
        annotations = release.inputs["values"]["webhook"]["serviceAccount"]["annotations"]
        assert set(annotations) & {"eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account"}
    for policy in plan.of_type(POLICY):
        assert {r.urn for r in releases} & set(policy.dependencies), "the chart installs the CRDs first"
    for app in ("mlops:k8s:TrackingServer", "mlops:k8s:ModelServing"):
        for component in (r for r in plan.resources if r.type == app):
            cluster = component.name.split("-", 1)[0]
            waits_for = {d.rsplit("::", 1)[1] for d in component.dependencies if "mlops:k8s:ImageAdmission$" in d}
            assert waits_for and all(name.startswith(f"{cluster}-apps-image-admission-") for name in waits_for), app


def test_the_local_stack_verifies_nothing_and_refuses_to_pretend(plans: dict[str, Plan]) -> None:
    plan = plans["local"]
    assert not plan.of_type(POLICY)
    assert all(r.inputs["chart"] != admission.POLICY_CONTROLLER_CHART for r in plan.of_type(RELEASE))
    config = load_stack(ROOT, "local").model_dump(mode="json")
    config["images"]["verify_signatures"] = True
    with pytest.raises(ValueError, match=r"images\.verify_signatures: the local environment"):
        Settings.model_validate(config)


def test_turning_verification_off_is_a_mandatory_violation(plan_with: Any) -> None:
    def off(config: dict[str, Any]) -> None:
        config[key("images")]["verify_signatures"] = False

    plan = plan_with("prod", off)
    assert not plan.of_type(POLICY)
    report = check_plan(plan)
    assert {v.policy for v in report.mandatory} == {
        "kubernetes-sigstore-clusterimagepolicy-enable-signature-verification"
    }

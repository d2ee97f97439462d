"""Registries and image references in the planned stacks: the stacks own their registries (hardened,
pushed to by the deploy identity, pulled from by the nodes), the workloads pull from them by digest,
and the policy catches a tag, `latest` and a foreign registry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config import load_stack
from infra.k8s.admission import VERIFIER
from infra.k8s.components import APPS_NOT_DEPLOYED
from infra.naming import IMAGES
from pipelines.plan.graph import Plan, PlannedResource
from pipelines.plan.policy import check_plan, engine_props
from policies.infra.pack import BY_NAME
from policies.infra.rules import Context, Resource
from policies.infra.rules.images import THIRD_PARTY_REPOSITORIES
from policies.infra.rules.kubernetes import WORKLOADS
from tests.conftest import LOCAL_REGISTRY, ROOT
from tests.planning import DIGESTS, STACKS, key, stack_images

CLOUD_STACKS = [s for s in STACKS if s != "local"]
THIRD_PARTY = ("docker.io/library/postgres:", "quay.io/minio/")


def pod_containers(resource: PlannedResource) -> list[dict[str, Any]]:
    spec = resource.inputs["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if "jobTemplate" in spec else spec["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def images_of(plan: Plan) -> list[tuple[str, str]]:
    return [(r.name, c["image"]) for t in WORKLOADS for r in plan.of_type(t) for c in pod_containers(r)]


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_workloads_pull_the_pinned_digests_from_the_stack_registries(plans: dict[str, Plan], stack: str) -> None:
    plan = plans[stack]
    found = images_of(plan)
    app_images = stack_images(plan, "serving") | stack_images(plan, "tracking")
    for name, image in found:
        assert image in app_images or image.startswith(THIRD_PARTY), f"{name}: {image}"
        assert "@sha256:" in image, f"{name}: {image}"
    # every cluster runs both apps (and the drift check) from its own cloud's registry
    for image in IMAGES:
        assert stack_images(plan, image) <= {i for _, i in found}
    for name, image in found:
        cloud = name.split("-", 1)[0]
        if image in app_images:
            assert image.startswith(plan.outputs[cloud]["registry"]), f"{name} pulls from another cloud: {image}"


def test_the_local_stack_uses_its_references(plans: dict[str, Plan]) -> None:
    settings_pins = {image: f"{LOCAL_REGISTRY}/{image}@{DIGESTS[image]}" for image in IMAGES}
    pulled = {image for _, image in images_of(plans["local"])}
    assert set(settings_pins.values()) <= pulled


@pytest.mark.parametrize("stack", STACKS)
def test_the_rendered_stacks_pin_nothing_yet_and_deploy_no_app(plan_with: Any, stack: str) -> None:
    """As rendered, nothing is built: the stacks create the registries, the apps wait for their images."""
    settings = load_stack(ROOT, stack)
    assert settings.images.serving is None and settings.images.tracking is None

    def unpin(config: dict[str, Any]) -> None:
        config[key("images")].update(serving=None, tracking=None)

    plan = plan_with(stack, unpin)
    assert images_of(plan) == [] or all(image.startswith(THIRD_PARTY) for _, image in images_of(plan))
    assert not [r for r in plan.of_type("kubernetes:apps/v1:Deployment")]
    outputs = [plan.outputs[c] for c in plan.clouds] if plan.clouds else [plan.outputs["local"]]
    assert all(o["apps"] == APPS_NOT_DEPLOYED for o in outputs)
    if stack != "local":
        assert plan.of_type("aws:ecr/repository:Repository") or plan.of_type(
            "gcp:artifactregistry/repository:Repository"
        )
    report = check_plan(plan)
    assert report.mandatory == [], [f"{v.policy}: {v.message}" for v in report.mandatory]


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_ecr_repositories_are_hardened_and_only_deploy_nodes_and_verifier_have_access(
    plans: dict[str, Plan], stack: str
) -> None:
    plan = plans[stack]
    if "aws" not in plan.clouds:
        assert not plan.of_type("aws:ecr/repository:Repository")
        return
    settings = load_stack(ROOT, stack)
    repositories = {r.inputs["name"]: r for r in plan.of_type("aws:ecr/repository:Repository")}
    assert set(repositories) == {plan.outputs["aws"]["repositories"][image] for image in IMAGES}
    (key_resource,) = [k for k in plan.of_type("aws:kms/key:Key") if "artifact" in k.inputs.get("description", "")]
    for repository in repositories.values():
        inputs = repository.inputs
        assert inputs["imageTagMutability"] == "IMMUTABLE" and inputs["imageScanningConfiguration"]["scanOnPush"]
        (encryption,) = inputs["encryptionConfigurations"]
        assert encryption["encryptionType"] == "KMS" and encryption["kmsKey"].startswith("arn:aws:kms:")
        assert key_resource.inputs["enableKeyRotation"] is True
    account = plan.outputs["aws"]["deploy_role_arn"].split(":")[4]
    (nodes,) = [r for r in plan.of_type("aws:iam/role:Role") if r.inputs.get("name", "").endswith("-nodes")]
    verifier = plan.outputs["aws"]["workload_roles"][VERIFIER]
    expected = {
        "DeployPushes": [plan.outputs["aws"]["deploy_role_arn"]],
        "Pull": [f"arn:aws:iam::{account}:role/{nodes.inputs['name']}", verifier],
    }
    for policy in plan.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy"):
        statements = json.loads(policy.inputs["policy"])["Statement"]
        assert {s["Sid"]: s["Principal"]["AWS"] for s in statements} == expected
        pulls = next(s for s in statements if s["Sid"] == "Pull")["Action"]
        assert not [a for a in pulls if a in ("ecr:PutImage", "ecr:InitiateLayerUpload")], "nodes only pull"
    # The image verifier reads the stack's repositories (signatures are images there) and nothing else.
    (access,) = [
        json.loads(p.inputs["policy"])
        for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.name.endswith(f"-{VERIFIER}")
    ]
    reads = {s["Sid"]: (s["Action"], s["Resource"]) for s in access["Statement"]}
    assert reads["RegistryLogin"] == (["ecr:GetAuthorizationToken"], "*")
    stem = next(iter(repositories)).split("/")[0]
    assert settings.aws is not None
    assert reads["ReadImages"][1] == f"arn:aws:ecr:{settings.aws.region}:{account}:repository/{stem}/*"
    assert set(reads["ReadImages"][0]) == {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }
    for lifecycle in plan.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy"):
        rules = json.loads(lifecycle.inputs["policy"])["rules"]
        counts = [r["selection"]["countNumber"] for r in rules if r["selection"]["countType"] == "imageCountMoreThan"]
        assert counts == [settings.images.keep_last]
    assert len(plan.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")) == len(IMAGES)


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_artifact_registry_has_cleanup_and_only_deploy_nodes_and_verifier_have_access(
    plans: dict[str, Plan], stack: str
) -> None:
    plan = plans[stack]
    if "gcp" not in plan.clouds:
        assert not plan.of_type("gcp:artifactregistry/repository:Repository")
        return
    settings = load_stack(ROOT, stack)
    (repository,) = plan.of_type("gcp:artifactregistry/repository:Repository")
    inputs = repository.inputs
    assert inputs["format"] == "DOCKER" and inputs["dockerConfig"]["immutableTags"] is True
    assert inputs["cleanupPolicyDryRun"] is False
    keep = [p for p in inputs["cleanupPolicies"] if p["action"] == "KEEP"]
    assert [p["mostRecentVersions"]["keepCount"] for p in keep] == [settings.images.keep_last]
    assert plan.outputs["gcp"]["registry"].endswith(f"/{inputs['project']}/{inputs['repositoryId']}")
    members = {
        (m.inputs["role"], m.inputs["member"])
        for m in plan.of_type("gcp:artifactregistry/repositoryIamMember:RepositoryIamMember")
    }
    deploy = f"serviceAccount:{plan.outputs['gcp']['deploy_service_account']}"
    verifier = f"serviceAccount:{plan.outputs['gcp']['workload_service_accounts'][VERIFIER]}"
    (nodes,) = [m for role, m in members if role == "roles/artifactregistry.reader" and m != verifier]
    assert members == {
        ("roles/artifactregistry.writer", deploy),
        ("roles/artifactregistry.reader", nodes),
        ("roles/artifactregistry.reader", verifier),
    }
    assert "gke-nodes" in nodes
    buckets = {m.inputs["member"] for m in plan.of_type("gcp:storage/bucketIAMMember:BucketIAMMember")}
    assert verifier not in buckets, "the image verifier reads images, not the bucket"


def workload(image: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"name": "serving", "image": image}]}}}}


def test_the_digest_rule_catches_tags_and_latest() -> None:
    digest_rule = BY_NAME["kubernetes-apps-workload-configure-image-digest"]
    latest_rule = BY_NAME["kubernetes-apps-deployment-disallow-latest-tag"]
    assert digest_rule.check is not None and latest_rule.check is not None
    context = Context(digest_rule.config_defaults)
    for image in ("ghcr.io/acme/serving:latest", "ghcr.io/acme/serving", "ghcr.io/acme/serving:1.0"):
        assert list(digest_rule.check(workload(image), context)), image
    assert list(latest_rule.check(workload("ghcr.io/acme/serving:latest"), context))
    assert not list(digest_rule.check(workload("ghcr.io/acme/serving@" + DIGESTS["serving"]), context))


@pytest.mark.parametrize(("stack", "blocking"), [("prod", True), ("dev", False)])
def test_a_foreign_registry_is_caught_and_blocks_prod(plan_with: Any, stack: str, blocking: bool) -> None:
    foreign = {image: f"ghcr.io/acme/{image}:1.0" for image in IMAGES}

    def elsewhere(config: dict[str, Any]) -> None:
        config[key("images")].update({image: {"reference": ref} for image, ref in foreign.items()})

    report = check_plan(plan_with(stack, elsewhere))
    found = {(v.policy, str(v.enforcement)) for v in report.violations}
    level = "mandatory" if blocking else "advisory"
    assert ("kubernetes-apps-workload-disallow-foreign-registry", level) in found
    assert ("kubernetes-apps-workload-configure-image-digest", level) in found
    assert bool(report.mandatory) is blocking


def test_the_registry_rule_needs_the_stack_registry_not_just_any_ecr(plans: dict[str, Plan]) -> None:
    rule = BY_NAME["kubernetes-apps-workload-disallow-foreign-registry"]
    assert rule.stack_check is not None
    plan = plans["prod"]
    resources = [
        Resource(r.type, r.name, r.urn, engine_props(r.inputs), tuple(r.dependencies), r.parent) for r in plan.resources
    ]
    assert list(rule.stack_check(resources, Context(rule.config_defaults))) == []
    other = "999999999999.dkr.ecr.us-east-1.amazonaws.com/someone-else/serving@" + DIGESTS["serving"]
    other_ar = "europe-west1-docker.pkg.dev/other-project/other-repo/serving@" + DIGESTS["serving"]
    nested = [  # a repository *inside* the stack's name is another repository
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{r.inputs['name']}/x@" + DIGESTS["serving"]
        for r in plan.of_type("aws:ecr/repository:Repository")
    ]
    for image in (other, other_ar, *nested):
        changed = [
            Resource(r.type, r.name, r.urn, workload(image), r.dependencies, r.parent)
            if r.type == "kubernetes:apps/v1:Deployment"
            else r
            for r in resources
        ]
        assert list(rule.stack_check(changed, Context(rule.config_defaults))), image
    # an allowed third-party repository is configurable per environment
    third = [
        Resource("kubernetes:apps/v1:Deployment", "x", "urn:x", workload("quay.io/acme/tool@" + DIGESTS["serving"]))
    ]
    assert list(rule.stack_check(resources + third, Context(rule.config_defaults)))
    allowed = {"allowed_repositories": [*THIRD_PARTY_REPOSITORIES, "quay.io/acme/tool"]}
    assert list(rule.stack_check(resources + third, Context(allowed))) == []

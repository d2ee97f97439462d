"""The infrastructure rules: each one is real (it fires on a broken resource), quiet on the defaults,
not applicable elsewhere, and configurable per environment."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from infra.config import load_stack
from pipelines.plan.graph import Plan, PlannedResource
from pipelines.plan.policy import check_plan, engine_props
from policies.infra.pack import BY_NAME, RULES, enforcement, environment_config, rule_config
from policies.infra.rules import Context, Enforcement, Resource, Rule
from policies.infra.rules.governance import TAG_FIELDS
from tests.conftest import ROOT
from tests.planning import STACKS, tag_field

# The clouds this project uses: rules of another cloud must find nothing to check here.
CLOUDS = {cloud.value for stack in STACKS for cloud in load_stack(ROOT, stack).clouds}


def relevant(name: str) -> bool:
    provider = name.split("-", 1)[0]
    return provider in ("kubernetes", "governance") or provider in CLOUDS


def assert_nothing_to_check(plans: dict[str, Plan], types: tuple[str, ...] | list[str]) -> None:
    for plan in plans.values():
        assert not [r.name for r in plan.resources if r.type in types], f"{plan.stack} has {types}"


NAME = re.compile(r"^(aws|gcp|kubernetes|governance)(-[a-z0-9]+){2,}-(disallow|enable|configure)(-[a-z0-9]+)+$")


def test_the_pack_has_at_least_40_well_named_documented_rules() -> None:
    assert len(RULES) >= 40
    assert len(BY_NAME) == len(RULES)
    for rule in RULES:
        assert NAME.match(rule.name), rule.name
        assert rule.description.endswith(".") and len(rule.description) > 30, rule.name
        assert rule.remediation, rule.name


def test_tag_fields_match_the_sdks() -> None:
    checked = [t for t in TAG_FIELDS if t.split(":", 1)[0] in CLOUDS]  # only this project's SDKs are installed
    assert checked
    for resource_type in checked:
        assert tag_field(resource_type) == TAG_FIELDS[resource_type], resource_type


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_default_stacks_have_no_mandatory_violation(plans: dict[str, Plan], stack: str) -> None:
    report = check_plan(plans[stack])
    assert report.mandatory == [], [f"{v.policy}: {v.message}" for v in report.mandatory]


def first(
    plans: dict[str, Plan], type_: str, where: Callable[[dict[str, Any]], bool] = lambda p: True
) -> PlannedResource:
    for stack in ("prod", "dev", "local"):
        for resource in plans[stack].of_type(type_):
            if resource.custom and where(resource.inputs):
                return resource
    pytest.fail(f"no {type_} in the default plans")


def run(rule: Rule, type_: str, inputs: dict[str, Any], config: dict[str, Any] | None = None) -> list[str]:
    assert rule.check is not None
    if not rule.applies_to(type_):
        return []
    return list(rule.check(engine_props(inputs), Context({**rule.config_defaults, **(config or {})})))


def set_path(inputs: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(inputs)
    target: Any = changed
    *parents, last = path.split(".")
    for step in parents:
        target = target[int(step)] if isinstance(target, list) else target.setdefault(step, {})
    if value is DELETE:
        target.pop(last, None)
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return changed


DELETE = object()
LOOSE_GITHUB_TRUST = json.dumps(
    {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"},
                "Condition": {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/*"}},
            }
        ]
    }
)
IS_SERVING = lambda p: p.get("metadata", {}).get("name") == "serving"  # noqa: E731
ROLLOUT = "kubernetes:argoproj.io/v1alpha1:Rollout"  # serving: a canary Rollout in every default stack
IMAGE_POLICY = "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy"
IS_SPOT = lambda p: p.get("capacityType") == "SPOT" or p.get("nodeConfig", {}).get("spot") is True  # noqa: E731

# rule -> (resource type, which default resource, path, a violating value, whether a missing value violates)
RESOURCE_CASES: dict[str, tuple[str, Callable[[dict[str, Any]], bool], str, Any, bool]] = {
    "kubernetes-apps-workload-configure-image-digest": (
        "kubernetes:apps/v1:Deployment",
        lambda p: True,
        "spec.template.spec.containers.0.image",
        "ghcr.io/acme/serving:1.0",
        True,
    ),
    "aws-ecr-repository-disallow-mutable-tags": (
        "aws:ecr/repository:Repository",
        lambda p: True,
        "imageTagMutability",
        "MUTABLE",
        True,
    ),
    "aws-ecr-repository-enable-scan-on-push": (
        "aws:ecr/repository:Repository",
        lambda p: True,
        "imageScanningConfiguration.scanOnPush",
        False,
        True,
    ),
    "aws-ecr-repository-enable-kms-encryption": (
        "aws:ecr/repository:Repository",
        lambda p: True,
        "encryptionConfigurations.0.encryptionType",
        "AES256",
        True,
    ),
    "gcp-artifactregistry-repository-configure-cleanup-policies": (
        "gcp:artifactregistry/repository:Repository",
        lambda p: True,
        "cleanupPolicyDryRun",
        True,
        True,
    ),
    "gcp-container-cluster-enable-binary-authorization": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "binaryAuthorization.evaluationMode",
        "DISABLED",
        True,
    ),
    "gcp-binaryauthorization-policy-disallow-unattested-images": (
        "gcp:binaryauthorization/policy:Policy",
        lambda p: True,
        "defaultAdmissionRule.evaluationMode",
        "ALWAYS_ALLOW",
        True,
    ),
    "gcp-artifactregistry-repository-disallow-mutable-tags": (
        "gcp:artifactregistry/repository:Repository",
        lambda p: True,
        "dockerConfig.immutableTags",
        False,
        True,
    ),
    "aws-s3-publicaccessblock-enable-all-flags": (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        lambda p: True,
        "ignorePublicAcls",
        False,
        True,
    ),
    "aws-s3-bucketencryption-configure-kms": (
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        lambda p: True,
        "rules.0.applyServerSideEncryptionByDefault.sseAlgorithm",
        "AES256",
        True,
    ),
    "aws-kms-key-enable-rotation": ("aws:kms/key:Key", lambda p: True, "enableKeyRotation", False, True),
    "aws-eks-cluster-disallow-open-endpoint": (
        "aws:eks/cluster:Cluster",
        lambda p: True,
        "vpcConfig.endpointPublicAccess",
        True,
        True,
    ),
    "aws-eks-cluster-enable-secrets-encryption": (
        "aws:eks/cluster:Cluster",
        lambda p: True,
        "encryptionConfig.resources",
        [],
        True,
    ),
    "aws-eks-cluster-enable-control-plane-logging": (
        "aws:eks/cluster:Cluster",
        lambda p: True,
        "enabledClusterLogTypes",
        ["api"],
        True,
    ),
    "aws-eks-nodegroup-configure-autoscaling-limits": (
        "aws:eks/nodeGroup:NodeGroup",
        lambda p: True,
        "scalingConfig.maxSize",
        500.0,
        True,
    ),
    "aws-eks-nodegroup-configure-spot-taint": ("aws:eks/nodeGroup:NodeGroup", IS_SPOT, "taints", [], True),
    "aws-iam-policy-disallow-wildcard-actions": (
        "aws:iam/rolePolicy:RolePolicy",
        lambda p: "Objects" in p.get("policy", ""),
        "policy",
        '{"Statement": [{"Sid": "All", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}',
        False,
    ),
    "aws-iam-role-configure-github-trust": (
        "aws:iam/role:Role",
        lambda p: "githubusercontent" in p.get("assumeRolePolicy", ""),
        "assumeRolePolicy",
        LOOSE_GITHUB_TRUST,
        False,
    ),
    "aws-cloudwatch-loggroup-configure-retention": (
        "aws:cloudwatch/logGroup:LogGroup",
        lambda p: True,
        "retentionInDays",
        0.0,
        True,
    ),
    "aws-budgets-budget-configure-notifications": (
        "aws:budgets/budget:Budget",
        lambda p: True,
        "notifications",
        [],
        True,
    ),
    "gcp-storage-bucket-enable-uniform-access": (
        "gcp:storage/bucket:Bucket",
        lambda p: True,
        "uniformBucketLevelAccess",
        False,
        True,
    ),
    "gcp-storage-bucket-disallow-public-access": (
        "gcp:storage/bucket:Bucket",
        lambda p: True,
        "publicAccessPrevention",
        "inherited",
        True,
    ),
    "gcp-storage-bucket-enable-versioning": (
        "gcp:storage/bucket:Bucket",
        lambda p: True,
        "versioning.enabled",
        False,
        True,
    ),
    "gcp-storage-bucket-enable-lifecycle": ("gcp:storage/bucket:Bucket", lambda p: True, "lifecycleRules", [], True),
    "gcp-storage-bucket-configure-cmek": ("gcp:storage/bucket:Bucket", lambda p: True, "encryption", None, True),
    "gcp-container-cluster-enable-private-nodes": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "privateClusterConfig.enablePrivateNodes",
        False,
        True,
    ),
    "gcp-container-cluster-disallow-open-endpoint": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "privateClusterConfig.enablePrivateEndpoint",
        False,
        True,
    ),
    "gcp-container-cluster-enable-workload-identity": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "workloadIdentityConfig.workloadPool",
        "",
        True,
    ),
    "gcp-container-cluster-enable-shielded-nodes": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "enableShieldedNodes",
        False,
        True,
    ),
    "gcp-container-cluster-configure-release-channel": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "releaseChannel.channel",
        "UNSPECIFIED",
        True,
    ),
    "gcp-container-cluster-enable-secrets-encryption": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "databaseEncryption.state",
        "DECRYPTED",
        True,
    ),
    "gcp-container-cluster-enable-logging": (
        "gcp:container/cluster:Cluster",
        lambda p: True,
        "loggingConfig.enableComponents",
        ["SYSTEM_COMPONENTS"],
        True,
    ),
    "gcp-container-nodepool-configure-autoscaling-limits": (
        "gcp:container/nodePool:NodePool",
        lambda p: True,
        "autoscaling.totalMaxNodeCount",
        500.0,
        True,
    ),
    "gcp-container-nodepool-configure-spot-taint": (
        "gcp:container/nodePool:NodePool",
        IS_SPOT,
        "nodeConfig.taints",
        [],
        True,
    ),
    "gcp-container-nodepool-enable-node-hardening": (
        "gcp:container/nodePool:NodePool",
        lambda p: True,
        "nodeConfig.workloadMetadataConfig.mode",
        "GCE_METADATA",
        True,
    ),
    "gcp-iam-workloadidentityprovider-configure-github-condition": (
        "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider",
        lambda p: True,
        "attributeCondition",
        "assertion.repository_owner == 'acme'",
        True,
    ),
    "gcp-projects-iammember-disallow-primitive-roles": (
        "gcp:projects/iAMMember:IAMMember",
        lambda p: True,
        "role",
        "roles/editor",
        False,
    ),
    "kubernetes-apps-deployment-enable-resource-limits": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.containers.0.resources.limits",
        {},
        True,
    ),
    "kubernetes-apps-deployment-configure-non-root": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.containers.0.securityContext.runAsUser",
        0.0,
        False,
    ),
    "kubernetes-apps-deployment-enable-read-only-root": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.containers.0.securityContext.readOnlyRootFilesystem",
        False,
        True,
    ),
    "kubernetes-apps-deployment-disallow-privilege-escalation": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.containers.0.securityContext.allowPrivilegeEscalation",
        True,
        True,
    ),
    "kubernetes-apps-deployment-disallow-host-access": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.hostNetwork",
        True,
        False,
    ),
    "kubernetes-apps-deployment-enable-probes": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.containers.0.livenessProbe",
        None,
        True,
    ),
    "kubernetes-apps-deployment-disallow-latest-tag": (
        ROLLOUT,
        IS_SERVING,
        "spec.template.spec.containers.0.image",
        "ghcr.io/acme/serving:latest",
        True,
    ),
    "kubernetes-core-service-disallow-load-balancer": (
        "kubernetes:core/v1:Service",
        IS_SERVING,
        "spec.type",
        "LoadBalancer",
        False,
    ),
    "kubernetes-policy-poddisruptionbudget-configure-allowed-disruption": (
        "kubernetes:policy/v1:PodDisruptionBudget",
        lambda p: True,
        "spec.maxUnavailable",
        0.0,
        False,
    ),
    "governance-budget-limit-configure-ceiling": (
        ("aws:budgets/budget:Budget", lambda p: True, "limitAmount", "999999.00", False)
        if "aws" in CLOUDS
        else ("gcp:billing/budget:Budget", lambda p: True, "amount.specifiedAmount.units", "999999", False)
    ),
    "kubernetes-argoproj-rollout-configure-bounded-first-step": (
        ROLLOUT,
        IS_SERVING,
        "spec.strategy.canary.steps.0.setWeight",
        100,
        False,  # without it the next step's weight is the first, and the default's is within the bound
    ),
}
# Rules that forbid a resource type outright: any instance violates.
FORBIDDEN_TYPES = {
    "aws-iam-accesskey-disallow-creation": "aws:iam/accessKey:AccessKey",
    "gcp-serviceaccount-key-disallow-creation": "gcp:serviceaccount/key:Key",
}
CONFIG_CASES = {
    # rule -> (config that makes the default compliant resource violate)
    "aws-eks-nodegroup-configure-autoscaling-limits": {"max_nodes": 1},
    "gcp-container-nodepool-configure-autoscaling-limits": {"max_nodes": 1},
    "aws-eks-cluster-enable-control-plane-logging": {
        "log_types": ["api", "audit", "authenticator", "scheduler", "bogus"]
    },
    "aws-s3-bucketencryption-configure-kms": None,  # covered by the violating case; config turns it off below
    "governance-budget-limit-configure-ceiling": {"max_monthly_usd": 1},
    "gcp-storage-bucket-configure-cmek": {"require_cmek": True},
}


def test_every_resource_rule_has_cases() -> None:
    resource_rules = {r.name for r in RULES if not r.is_stack_rule}
    assert resource_rules == set(RESOURCE_CASES) | set(FORBIDDEN_TYPES)


@pytest.mark.parametrize("name", sorted(RESOURCE_CASES))
def test_resource_rule_compliant_violating_missing_not_applicable(plans: dict[str, Plan], name: str) -> None:
    rule = BY_NAME[name]
    type_, where, path, bad, missing_violates = RESOURCE_CASES[name]
    if not relevant(name):
        assert_nothing_to_check(plans, rule.resource_types)
        return
    resource = first(plans, type_, where)
    config = {
        "governance-budget-limit-configure-ceiling": {"max_monthly_usd": 100_000},
        "gcp-storage-bucket-configure-cmek": {"require_cmek": True},
    }.get(name)
    assert run(rule, type_, resource.inputs, config) == [], "the default resource must be compliant"
    assert run(rule, type_, set_path(resource.inputs, path, bad), config), "the broken resource must violate"
    assert bool(run(rule, type_, set_path(resource.inputs, path, DELETE), config)) is missing_violates
    assert run(rule, "kubernetes:core/v1:ConfigMap", set_path(resource.inputs, path, bad), config) == []


@pytest.mark.parametrize("name", sorted(FORBIDDEN_TYPES))
def test_forbidden_resource_types(name: str) -> None:
    rule = BY_NAME[name]
    assert run(rule, FORBIDDEN_TYPES[name], {"user": "someone"})
    assert run(rule, "aws:iam/role:Role", {"name": "x"}) == []


@pytest.mark.parametrize("name", sorted(k for k, v in CONFIG_CASES.items() if v))
def test_config_override_changes_the_verdict(plans: dict[str, Plan], name: str) -> None:
    rule = BY_NAME[name]
    type_, where, *_ = RESOURCE_CASES[name]
    if not relevant(name):
        assert_nothing_to_check(plans, rule.resource_types)
        return
    resource = first(plans, type_, where)
    base = {"max_monthly_usd": 1e9} if name == "governance-budget-limit-configure-ceiling" else None
    if name == "gcp-storage-bucket-configure-cmek":  # the default bucket has CMEK: drop it, then require it
        inputs = set_path(resource.inputs, "encryption", DELETE)
        assert run(rule, type_, inputs) == [] and run(rule, type_, inputs, CONFIG_CASES[name])
        return
    assert run(rule, type_, resource.inputs, base) == []
    assert run(rule, type_, resource.inputs, CONFIG_CASES[name])


def test_kms_requirement_can_be_turned_off(plans: dict[str, Plan]) -> None:
    rule = BY_NAME["aws-s3-bucketencryption-configure-kms"]
    type_, where, path, bad, _ = RESOURCE_CASES[rule.name]
    if not relevant(rule.name):
        assert_nothing_to_check(plans, rule.resource_types)
        return
    broken = set_path(first(plans, type_, where).inputs, path, bad)
    assert run(rule, type_, broken) and run(rule, type_, broken, {"require_kms": False}) == []


def stack_resources(plan: Plan, change: Callable[[list[PlannedResource]], list[PlannedResource]]) -> list[Resource]:
    kept = change(list(plan.resources))
    return [Resource(r.type, r.name, r.urn, engine_props(r.inputs), tuple(r.dependencies), r.parent) for r in kept]


def without(*types: str) -> Callable[[list[PlannedResource]], list[PlannedResource]]:
    return lambda resources: [r for r in resources if r.type not in types]


def more_node_pools(resources: list[PlannedResource]) -> list[PlannedResource]:
    """Ten more copies of every node pool: far more capacity than any default budget pays for."""
    pools = [r for r in resources if r.type in ("aws:eks/nodeGroup:NodeGroup", "gcp:container/nodePool:NodePool")]
    return resources + [
        PlannedResource(**{**r.__dict__, "urn": f"{r.urn}-{i}", "name": f"{r.name}-{i}"})
        for r in pools
        for i in range(10)
    ]


def foreign_image(resources: list[PlannedResource]) -> list[PlannedResource]:
    """The serving Rollouts pull the same digest, but from a registry the stack does not own."""
    path = "spec.template.spec.containers.0.image"

    def moved(r: PlannedResource) -> PlannedResource:
        if r.type != ROLLOUT or r.inputs["metadata"]["name"] != "serving":
            return r
        digest = r.inputs["spec"]["template"]["spec"]["containers"][0]["image"].split("@", 1)[1]
        return PlannedResource(**{**r.__dict__, "inputs": set_path(r.inputs, path, f"ghcr.io/acme/serving@{digest}")})

    return [moved(r) for r in resources]


def rollout_changed(path: str, value: Any) -> Callable[[list[PlannedResource]], list[PlannedResource]]:
    def change(resources: list[PlannedResource]) -> list[PlannedResource]:
        return [
            PlannedResource(**{**r.__dict__, "inputs": set_path(r.inputs, path, value)}) if r.type == ROLLOUT else r
            for r in resources
        ]

    return change


STACK_CASES: dict[str, Callable[[list[PlannedResource]], list[PlannedResource]]] = {
    "kubernetes-argoproj-rollout-enable-canary-analysis": rollout_changed("spec.strategy.canary.analysis", DELETE),
    "kubernetes-sigstore-clusterimagepolicy-enable-signature-verification": without(IMAGE_POLICY),
    "aws-ecr-repository-configure-lifecycle": without("aws:ecr/lifecyclePolicy:LifecyclePolicy"),
    "kubernetes-apps-workload-disallow-foreign-registry": foreign_image,
    "aws-eks-cluster-enable-irsa": without("aws:iam/openIdConnectProvider:OpenIdConnectProvider"),
    "aws-s3-bucket-enable-encryption": without(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ),
    "aws-s3-bucket-enable-versioning": without("aws:s3/bucketVersioning:BucketVersioning"),
    "aws-s3-bucket-disallow-public-access": without("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"),
    "aws-s3-bucket-enable-lifecycle": without("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"),
    "aws-s3-bucket-configure-tls-only": without("aws:s3/bucketPolicy:BucketPolicy"),
    "kubernetes-networking-namespace-enable-network-policy": without("kubernetes:networking.k8s.io/v1:NetworkPolicy"),
    "governance-budget-stack-enable-budget": without("aws:budgets/budget:Budget", "gcp:billing/budget:Budget"),
    "governance-cost-stack-disallow-over-budget": more_node_pools,
    "governance-tags-resource-configure-required-tags": lambda resources: [
        PlannedResource(**{**r.__dict__, "inputs": set_path(r.inputs, "metadata.labels", {})})
        if r.type == "kubernetes:core/v1:Namespace"
        else r
        for r in resources
    ],
}


def test_every_stack_rule_has_a_case() -> None:
    assert {r.name for r in RULES if r.is_stack_rule} == set(STACK_CASES)


@pytest.mark.parametrize("name", sorted(STACK_CASES))
def test_stack_rule_compliant_and_violating(plans: dict[str, Plan], name: str) -> None:
    rule = BY_NAME[name]
    assert rule.stack_check is not None
    plan = plans["prod"]
    context = Context(rule.config_defaults)
    if not relevant(name):  # e.g. an AWS bucket rule in a GCP-only project: nothing to find either way
        assert list(rule.stack_check(stack_resources(plan, STACK_CASES[name]), context)) == []
        return
    assert list(rule.stack_check(stack_resources(plan, lambda r: r), context)) == []
    assert list(rule.stack_check(stack_resources(plan, STACK_CASES[name]), context))


def test_a_canary_needs_its_analysis_template_and_a_canary_at_all(plans: dict[str, Plan]) -> None:
    rule = BY_NAME["kubernetes-argoproj-rollout-enable-canary-analysis"]
    assert rule.stack_check is not None
    missing = stack_resources(plans["prod"], without("kubernetes:argoproj.io/v1alpha1:AnalysisTemplate"))
    assert any("is no AnalysisTemplate of this stack" in m for _, m in rule.stack_check(missing, Context()))
    blue_green = stack_resources(plans["prod"], rollout_changed("spec.strategy", {"blueGreen": {}}))
    assert any("no canary strategy" in m for _, m in rule.stack_check(blue_green, Context()))


def _inputs_changed(type_: str, change: Callable[[dict[str, Any]], None]) -> Callable[..., list[PlannedResource]]:
    def changed(resources: list[PlannedResource]) -> list[PlannedResource]:
        result = []
        for resource in resources:
            if resource.type != type_:
                result.append(resource)
                continue
            inputs = copy.deepcopy(resource.inputs)
            change(inputs)
            result.append(PlannedResource(**{**resource.__dict__, "inputs": inputs}))
        return result

    return changed


def _static_pass(inputs: dict[str, Any]) -> None:
    inputs["spec"]["authorities"] = [{"name": "anything", "static": {"action": "pass"}}]


def _no_label(inputs: dict[str, Any]) -> None:
    inputs["metadata"]["labels"].pop("policy.sigstore.dev/include", None)


def _admit_unmatched(inputs: dict[str, Any]) -> None:
    if inputs.get("chart") == "policy-controller":
        inputs["values"]["webhook"]["configData"] = {"no-match-policy": "warn"}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_inputs_changed(IMAGE_POLICY, _static_pass), "without a keyless signature of a named identity"),
        (_inputs_changed("kubernetes:core/v1:Namespace", _no_label), "is not verified at admission"),
        (_inputs_changed("kubernetes:helm.sh/v3:Release", _admit_unmatched), "no-match-policy is not deny"),
        (without("kubernetes:helm.sh/v3:Release"), "no policy-controller verifies them"),
    ],
)
def test_signature_verification_names_what_is_missing(plans: dict[str, Plan], change: Any, complaint: str) -> None:
    rule = BY_NAME["kubernetes-sigstore-clusterimagepolicy-enable-signature-verification"]
    assert rule.stack_check is not None
    messages = [m for _, m in rule.stack_check(stack_resources(plans["prod"], change), Context())]
    assert any(complaint in m for m in messages), messages
    assert list(rule.stack_check(stack_resources(plans["local"], lambda r: r), Context())) == []


def test_stack_rules_do_not_apply_to_an_empty_stack() -> None:
    for rule in RULES:
        if rule.stack_check is not None:
            assert list(rule.stack_check([], Context(rule.config_defaults))) == [], rule.name


def test_required_tags_are_configurable(plans: dict[str, Plan]) -> None:
    rule = BY_NAME["governance-tags-resource-configure-required-tags"]
    resources = stack_resources(plans["local"], lambda r: r)
    assert rule.stack_check is not None
    assert list(rule.stack_check(resources, Context({"required": ["project", "team"]})))


@pytest.mark.parametrize("environment", ["local", "dev", "staging", "prod"])
def test_environment_config_is_valid_and_prod_is_strictest(environment: str) -> None:
    config = environment_config(environment)
    levels = {rule.name: enforcement(rule, config) for rule in RULES}
    if environment == "prod":
        assert set(levels.values()) == {Enforcement.MANDATORY}
    if environment == "dev":
        assert levels["aws-eks-cluster-disallow-open-endpoint"] is Enforcement.MANDATORY
        assert Enforcement.ADVISORY in levels.values()
    ceiling = rule_config(BY_NAME["governance-budget-limit-configure-ceiling"], config).get("max_monthly_usd")
    assert (ceiling is None) == (environment == "local")


def test_enforcement_override_disables_or_downgrades_a_rule(plans: dict[str, Plan]) -> None:
    """The per-environment config decides: `disabled` removes a rule's violations, `advisory` stops blocking."""
    plan = plans["local"]
    broken = Plan(
        **{
            **plan.__dict__,
            "resources": [
                PlannedResource(**{**r.__dict__, "inputs": set_path(r.inputs, "spec.type", "LoadBalancer")})
                if r.type == "kubernetes:core/v1:Service"
                else r
                for r in plan.resources
            ],
        }
    )
    name = "kubernetes-core-service-disallow-load-balancer"
    assert {v.enforcement for v in check_plan(broken, {"all": "mandatory"}).violations if v.policy == name} == {
        "mandatory"
    }
    assert {
        v.enforcement for v in check_plan(broken, {"all": "mandatory", name: "advisory"}).violations if v.policy == name
    } == {"advisory"}
    assert not [v for v in check_plan(broken, {"all": "mandatory", name: "disabled"}).violations if v.policy == name]

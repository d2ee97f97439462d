"""GCP rules: buckets, GKE clusters and node pools, service-account keys, Workload Identity Federation, IAM."""

from __future__ import annotations

import re
from collections.abc import Iterable

from policies.infra.rules import Context, Props, Rule, Severity, as_list, dig

BUCKET = ("gcp:storage/bucket:Bucket",)
CLUSTER = ("gcp:container/cluster:Cluster",)
NODE_POOL = ("gcp:container/nodePool:NodePool",)
ARTIFACT_REPOSITORY = ("gcp:artifactregistry/repository:Repository",)
ADMISSION_POLICY = ("gcp:binaryauthorization/policy:Policy",)
# An allowlist pattern that admits one repository's tags and digests: `registry/path*`, no other wildcard.
ONE_REPOSITORY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+\*$")


def _require(path: tuple[str, ...], expected: object, message: str):
    def check(props: Props, ctx: Context) -> Iterable[str]:
        if dig(props, *path) != expected:
            yield message

    return check


def _cmek(props: Props, ctx: Context) -> Iterable[str]:
    if ctx.config.get("require_cmek", False) and not dig(props, "encryption", "defaultKmsKeyName"):
        yield "bucket is not encrypted with a customer-managed Cloud KMS key"


def _lifecycle(props: Props, ctx: Context) -> Iterable[str]:
    if not as_list(props.get("lifecycleRules")):
        yield "bucket has no lifecycle rules: old versions and uploads are kept and paid for forever"


def _open_endpoint(props: Props, ctx: Context) -> Iterable[str]:
    blocks = [b.get("cidrBlock") for b in as_list(dig(props, "masterAuthorizedNetworksConfig", "cidrBlocks"))]
    if "0.0.0.0/0" in blocks:
        yield "master authorized networks include 0.0.0.0/0"
    private_endpoint = dig(props, "privateClusterConfig", "enablePrivateEndpoint")
    if private_endpoint is not True and not blocks:
        yield "the control plane has a public endpoint and no authorized networks"


def _logging(props: Props, ctx: Context) -> Iterable[str]:
    components = set(as_list(dig(props, "loggingConfig", "enableComponents")))
    if not {"SYSTEM_COMPONENTS", "WORKLOADS"} <= components:
        yield "cluster logging must include SYSTEM_COMPONENTS and WORKLOADS"


def _release_channel(props: Props, ctx: Context) -> Iterable[str]:
    if dig(props, "releaseChannel", "channel") in (None, "UNSPECIFIED"):
        yield "cluster is not on a release channel: security patches are not applied automatically"


def _pool_limits(props: Props, ctx: Context) -> Iterable[str]:
    autoscaling = props.get("autoscaling") or {}
    maximum = autoscaling.get("totalMaxNodeCount", autoscaling.get("maxNodeCount"))
    ceiling = ctx.config.get("max_nodes", 50)
    if maximum is None:
        yield "node pool has no autoscaling maximum"
    elif maximum > ceiling:
        yield f"node pool may grow to {maximum:g} nodes (ceiling {ceiling})"


def _spot_taint(props: Props, ctx: Context) -> Iterable[str]:
    config = props.get("nodeConfig") or {}
    if not (config.get("spot") or config.get("preemptible")):
        return
    if not any(t.get("effect") == "NO_SCHEDULE" for t in as_list(config.get("taints"))):
        yield "spot node pool has no NoSchedule taint: any pod could land on preemptible nodes"
    autoscaling = props.get("autoscaling") or {}
    if autoscaling.get("totalMinNodeCount", autoscaling.get("minNodeCount")) not in (0, 0.0):
        yield "spot node pool does not scale from zero"


def _pool_hardening(props: Props, ctx: Context) -> Iterable[str]:
    if dig(props, "nodeConfig", "workloadMetadataConfig", "mode") != "GKE_METADATA":
        yield "node pool does not use the GKE metadata server (Workload Identity)"
    if dig(props, "nodeConfig", "shieldedInstanceConfig", "enableSecureBoot") is not True:
        yield "node pool nodes are not shielded (secure boot off)"


def _github_condition(props: Props, ctx: Context) -> Iterable[str]:
    if "token.actions.githubusercontent.com" not in str(dig(props, "oidc", "issuerUri") or ""):
        return
    condition = str(props.get("attributeCondition") or "")
    if "assertion.repository ==" not in condition or "assertion.environment ==" not in condition:
        yield "GitHub federation must be conditioned on assertion.repository and assertion.environment"


def _no_key(props: Props, ctx: Context) -> Iterable[str]:
    yield "service-account keys are long-lived credentials: use Workload Identity (Federation)"


def _primitive_roles(props: Props, ctx: Context) -> Iterable[str]:
    if props.get("role") in ("roles/owner", "roles/editor"):
        yield f"{props.get('role')} is far broader than any app or deploy needs"


def _cleanup(props: Props, ctx: Context) -> Iterable[str]:
    policies = as_list(props.get("cleanupPolicies"))
    if props.get("format") != "DOCKER":
        return
    if not policies:
        yield "repository has no cleanup policies: every image is kept and paid for"
    elif props.get("cleanupPolicyDryRun") is not False:
        yield "cleanup policies run as a dry run (cleanupPolicyDryRun is not false): nothing is deleted"
    elif not any(p.get("action") == "KEEP" and p.get("mostRecentVersions") for p in policies):
        yield "no KEEP policy for the most recent versions: cleanup could delete the image a rollback needs"


def _binary_authorization(props: Props, ctx: Context) -> Iterable[str]:
    if dig(props, "binaryAuthorization", "evaluationMode") != "PROJECT_SINGLETON_POLICY_ENFORCE":
        yield "Binary Authorization is not enforced: the cluster runs any image from any registry"


def _admission_rule(where: str, rule: Props) -> Iterable[str]:
    mode = rule.get("evaluationMode")
    if mode not in ("REQUIRE_ATTESTATION", "ALWAYS_DENY"):
        yield f"{where} admits images without an attestation (evaluationMode {mode})"
    elif mode == "REQUIRE_ATTESTATION" and not as_list(rule.get("requireAttestationsBies")):
        yield f"{where} requires attestations but names no attestor"
    if rule.get("enforcementMode") != "ENFORCED_BLOCK_AND_AUDIT_LOG":
        yield f"{where} only logs what it should block (enforcementMode {rule.get('enforcementMode')})"


def _admission_policy(props: Props, ctx: Context) -> Iterable[str]:
    yield from _admission_rule("the default rule", props.get("defaultAdmissionRule") or {})
    for cluster, rule in (props.get("clusterAdmissionRules") or {}).items():
        yield from _admission_rule(f"the rule of cluster {cluster}", rule or {})
    for pattern in as_list(props.get("admissionWhitelistPatterns")):
        name = (pattern or {}).get("namePattern", "")
        if not ONE_REPOSITORY.match(name):
            yield f"allowlist pattern {name!r} admits more than one repository's images"


RULES = [
    Rule(
        "gcp-storage-bucket-enable-uniform-access",
        "Object ACLs bypass IAM; uniform bucket-level access makes IAM the only door.",
        Severity.HIGH,
        "Set uniform_bucket_level_access=True.",
        BUCKET,
        check=_require(("uniformBucketLevelAccess",), True, "uniform bucket-level access is off"),
    ),
    Rule(
        "gcp-storage-bucket-disallow-public-access",
        "Public access prevention stops anyone from making models or data public by mistake.",
        Severity.CRITICAL,
        "Set public_access_prevention='enforced'.",
        BUCKET,
        check=_require(("publicAccessPrevention",), "enforced", "public access prevention is not enforced"),
    ),
    Rule(
        "gcp-storage-bucket-enable-versioning",
        "Versioning keeps overwritten or deleted model artifacts recoverable.",
        Severity.MEDIUM,
        "Set versioning.enabled=True.",
        BUCKET,
        check=_require(("versioning", "enabled"), True, "object versioning is off"),
    ),
    Rule(
        "gcp-storage-bucket-enable-lifecycle",
        "Lifecycle rules move old artifacts to cheaper classes and expire superseded versions.",
        Severity.LOW,
        "Add lifecycle rules (archive old objects, delete old versions, abort incomplete uploads).",
        BUCKET,
        check=_lifecycle,
    ),
    Rule(
        "gcp-storage-bucket-configure-cmek",
        "Where the stack asks for customer-managed keys, the bucket must use one.",
        Severity.MEDIUM,
        "Set encryption.default_kms_key_name to the stack's Cloud KMS key.",
        BUCKET,
        check=_cmek,
        config_defaults={"require_cmek": False},
    ),
    Rule(
        "gcp-container-cluster-enable-private-nodes",
        "Nodes with public IPs are reachable from the internet.",
        Severity.HIGH,
        "Set private_cluster_config.enable_private_nodes=True (Cloud NAT for egress).",
        CLUSTER,
        check=_require(("privateClusterConfig", "enablePrivateNodes"), True, "nodes have public IP addresses"),
    ),
    Rule(
        "gcp-container-cluster-disallow-open-endpoint",
        "A control plane open to the internet is one leaked credential away from compromise.",
        Severity.CRITICAL,
        "Use a private endpoint, or list your ranges in master_authorized_networks_config (never 0.0.0.0/0).",
        CLUSTER,
        check=_open_endpoint,
    ),
    Rule(
        "gcp-container-cluster-enable-workload-identity",
        "Workload Identity gives pods their own Google identity instead of the node's.",
        Severity.HIGH,
        "Set workload_identity_config.workload_pool='<project>.svc.id.goog'.",
        CLUSTER,
        check=lambda p, c: [] if dig(p, "workloadIdentityConfig", "workloadPool") else ["Workload Identity is off"],
    ),
    Rule(
        "gcp-container-cluster-enable-shielded-nodes",
        "Shielded nodes verify the boot chain of every node.",
        Severity.MEDIUM,
        "Set enable_shielded_nodes=True.",
        CLUSTER,
        check=_require(("enableShieldedNodes",), True, "shielded nodes are off"),
    ),
    Rule(
        "gcp-container-cluster-configure-release-channel",
        "A release channel keeps the control plane and nodes patched.",
        Severity.MEDIUM,
        "Set release_channel.channel to REGULAR or STABLE.",
        CLUSTER,
        check=_release_channel,
    ),
    Rule(
        "gcp-container-cluster-enable-secrets-encryption",
        "Application-layer secrets encryption protects secrets with a key you control.",
        Severity.HIGH,
        "Set database_encryption to ENCRYPTED with a Cloud KMS key.",
        CLUSTER,
        check=_require(
            ("databaseEncryption", "state"), "ENCRYPTED", "Kubernetes secrets are not encrypted with Cloud KMS"
        ),
    ),
    Rule(
        "gcp-container-cluster-enable-logging",
        "System and workload logs are how an incident is investigated.",
        Severity.MEDIUM,
        "Enable SYSTEM_COMPONENTS and WORKLOADS in logging_config.",
        CLUSTER,
        check=_logging,
    ),
    Rule(
        "gcp-container-cluster-enable-binary-authorization",
        "GKE itself refuses images the project's policy does not admit, whatever happens to in-cluster webhooks.",
        Severity.HIGH,
        "Set binary_authorization.evaluation_mode='PROJECT_SINGLETON_POLICY_ENFORCE'.",
        CLUSTER,
        check=_binary_authorization,
    ),
    Rule(
        "gcp-binaryauthorization-policy-disallow-unattested-images",
        "An image must be attested by the build, or come from a repository named one by one.",
        Severity.HIGH,
        "Use REQUIRE_ATTESTATION with an attestor, ENFORCED_BLOCK_AND_AUDIT_LOG, and `registry/path*` patterns.",
        ADMISSION_POLICY,
        check=_admission_policy,
    ),
    Rule(
        "gcp-container-nodepool-configure-autoscaling-limits",
        "An unbounded node pool turns a runaway job into an unbounded bill.",
        Severity.MEDIUM,
        "Set autoscaling total_max_node_count within the environment's ceiling.",
        NODE_POOL,
        check=_pool_limits,
        config_defaults={"max_nodes": 50},
    ),
    Rule(
        "gcp-container-nodepool-configure-spot-taint",
        "Spot VMs are reclaimed at any time: only interruptible work may run there, and idle pools cost nothing.",
        Severity.MEDIUM,
        "Give spot pools a NoSchedule taint (workload=batch) and autoscaling from zero.",
        NODE_POOL,
        check=_spot_taint,
    ),
    Rule(
        "gcp-container-nodepool-enable-node-hardening",
        "Pods must reach Google APIs through Workload Identity, on nodes with a verified boot chain.",
        Severity.HIGH,
        "Set workload_metadata_config.mode=GKE_METADATA and shielded_instance_config.enable_secure_boot=True.",
        NODE_POOL,
        check=_pool_hardening,
    ),
    Rule(
        "gcp-iam-workloadidentityprovider-configure-github-condition",
        "Without a condition, any GitHub repository could federate into the project.",
        Severity.CRITICAL,
        "Set attribute_condition to assertion.repository == '<owner>/<repo>' && assertion.environment == '<env>'.",
        ("gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider",),
        check=_github_condition,
    ),
    Rule(
        "gcp-serviceaccount-key-disallow-creation",
        "Service-account keys are long-lived secrets; Workload Identity needs none.",
        Severity.CRITICAL,
        "Remove the key; use Workload Identity Federation (CI) or Workload Identity (pods).",
        ("gcp:serviceaccount/key:Key",),
        check=_no_key,
    ),
    Rule(
        "gcp-projects-iammember-disallow-primitive-roles",
        "Owner and Editor grant nearly everything in the project.",
        Severity.HIGH,
        "Grant predefined roles scoped to the job (bucket-level roles for apps).",
        ("gcp:projects/iAMMember:IAMMember", "gcp:projects/iAMBinding:IAMBinding"),
        check=_primitive_roles,
    ),
    Rule(
        "gcp-artifactregistry-repository-configure-cleanup-policies",
        "Without cleanup policies every image ever pushed is stored and paid for.",
        Severity.LOW,
        "Set cleanup_policies (KEEP the most recent N, DELETE older) and cleanup_policy_dry_run=false.",
        ARTIFACT_REPOSITORY,
        check=_cleanup,
    ),
    Rule(
        "gcp-artifactregistry-repository-disallow-mutable-tags",
        "A mutable tag can be pushed over: the same name then means different code.",
        Severity.HIGH,
        "Set docker_config.immutable_tags=true.",
        ARTIFACT_REPOSITORY,
        check=_require(("dockerConfig", "immutableTags"), True, "image tags are mutable"),
    ),
]

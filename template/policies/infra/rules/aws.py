"""AWS rules: buckets, keys, EKS, node groups, IAM, logs, budgets."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from policies.infra.rules import Context, Props, Resource, Rule, Severity, as_list, dig

BUCKET = "aws:s3/bucket:Bucket"
ECR_REPOSITORY = ("aws:ecr/repository:Repository",)
ECR_LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
READ_PREFIXES = ("Describe", "Get", "List", "View")


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return dict(value) if isinstance(value, Mapping) else {}


def _companion(type_: str, what: str, ok: Any = None) -> Any:
    """A stack check: every bucket has a companion resource of `type_` (that `ok` accepts) depending on it."""

    def check(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
        companions = [r for r in resources if r.type == type_ and (ok is None or ok(r.props))]
        for bucket in (r for r in resources if r.type == BUCKET):
            if not any(c.depends_on(bucket.urn) for c in companions):
                yield bucket.urn, f"bucket {bucket.name} has no {what}"

    return check


def _tls_only(props: Props) -> bool:
    for statement in as_list(_document(props.get("policy")).get("Statement")):
        if statement.get("Effect") == "Deny" and dig(statement, "Condition", "Bool", "aws:SecureTransport") == "false":
            return True
    return False


def _public_access_blocked(props: Props) -> Iterable[str]:
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    off = [flag for flag in flags if props.get(flag) is not True]
    if off:
        yield f"public access block leaves {', '.join(off)} off"


def _kms_encryption(props: Props, ctx: Context) -> Iterable[str]:
    for rule in as_list(props.get("rules")):
        algorithm = dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if ctx.config.get("require_kms", True) and algorithm not in ("aws:kms", "aws:kms:dsse"):
            yield f"encryption uses {algorithm!r}: a customer-managed KMS key is required"


def _key_rotation(props: Props, ctx: Context) -> Iterable[str]:
    if props.get("enableKeyRotation") is not True:
        yield "KMS key rotation is off"


def _open_endpoint(props: Props, ctx: Context) -> Iterable[str]:
    public = dig(props, "vpcConfig", "endpointPublicAccess")
    cidrs = as_list(dig(props, "vpcConfig", "publicAccessCidrs"))
    if public is not False and (not cidrs or "0.0.0.0/0" in cidrs):
        yield "the API endpoint is open to the internet: make it private or list publicAccessCidrs (not 0.0.0.0/0)"


def _secrets_encryption(props: Props, ctx: Context) -> Iterable[str]:
    if "secrets" not in as_list(dig(props, "encryptionConfig", "resources")):
        yield "Kubernetes secrets are not encrypted with a KMS key (encryptionConfig)"


def _control_plane_logs(props: Props, ctx: Context) -> Iterable[str]:
    required = set(ctx.config.get("log_types", ["api", "audit", "authenticator"]))
    missing = sorted(required - set(as_list(props.get("enabledClusterLogTypes"))))
    if missing:
        yield f"control-plane logs not enabled: {', '.join(missing)}"


def _autoscaling_limits(props: Props, ctx: Context) -> Iterable[str]:
    maximum = dig(props, "scalingConfig", "maxSize")
    ceiling = ctx.config.get("max_nodes", 50)
    if maximum is None:
        yield "node group has no scalingConfig.maxSize"
    elif maximum > ceiling:
        yield f"node group may grow to {maximum:g} nodes (ceiling {ceiling})"


def _spot_taint(props: Props, ctx: Context) -> Iterable[str]:
    if props.get("capacityType") != "SPOT":
        return
    taints = as_list(props.get("taints"))
    if not any(t.get("effect") == "NO_SCHEDULE" for t in taints):
        yield "spot node group has no NoSchedule taint: any pod could land on interruptible nodes"
    if dig(props, "scalingConfig", "minSize") not in (0, 0.0):
        yield "spot node group does not scale to zero (scalingConfig.minSize > 0)"


def _is_write(action: str) -> bool:
    service_action = action.split(":", 1)[-1]
    return not service_action.startswith(READ_PREFIXES)


def _wildcards(props: Props, ctx: Context) -> Iterable[str]:
    for statement in as_list(_document(props.get("policy")).get("Statement")):
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(statement.get("Action"))]
        sid = statement.get("Sid", "?")
        for action in actions:
            if action == "*" or (action.endswith(":*") and _is_write(action.replace("*", "Put"))):
                yield f"statement {sid} allows the wildcard action {action}"
        writes = [a for a in actions if _is_write(a) and "*" not in a]
        if writes and "*" in as_list(statement.get("Resource")) and not statement.get("Condition"):
            yield f"statement {sid} allows write actions on every resource (Resource '*')"


def _github_trust(props: Props, ctx: Context) -> Iterable[str]:
    for statement in as_list(_document(props.get("assumeRolePolicy")).get("Statement")):
        federated = str(dig(statement, "Principal", "Federated") or "")
        if "token.actions.githubusercontent.com" not in federated:
            continue
        equals = dig(statement, "Condition", "StringEquals") or {}
        subject = equals.get("token.actions.githubusercontent.com:sub")
        if not isinstance(subject, str) or "*" in subject or ":environment:" not in subject:
            yield "GitHub OIDC trust must bind `sub` to repo:<owner>/<repo>:environment:<env> exactly (StringEquals)"
        if equals.get("token.actions.githubusercontent.com:aud") != "sts.amazonaws.com":
            yield "GitHub OIDC trust must require aud sts.amazonaws.com"


def _no_access_keys(props: Props, ctx: Context) -> Iterable[str]:
    yield "long-lived access keys are not allowed: use OIDC (CI) or SSO (people)"


def _retention(props: Props, ctx: Context) -> Iterable[str]:
    days = props.get("retentionInDays")
    if not days:
        yield "log group keeps logs forever: set retentionInDays"
    elif days > ctx.config.get("max_days", 3653):
        yield f"log retention {days:g} days exceeds {ctx.config['max_days']}"


def _budget_notifications(props: Props, ctx: Context) -> Iterable[str]:
    kinds = {n.get("notificationType") for n in as_list(props.get("notifications"))}
    for kind in ("ACTUAL", "FORECASTED"):
        if kind not in kinds:
            yield f"budget has no {kind} notification"


def _irsa(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    providers = [r for r in resources if r.type == "aws:iam/openIdConnectProvider:OpenIdConnectProvider"]
    for cluster in (r for r in resources if r.type == "aws:eks/cluster:Cluster"):
        if not any(p.depends_on(cluster.urn) for p in providers):
            yield cluster.urn, f"cluster {cluster.name} has no IAM OIDC provider: pods cannot use IRSA roles"


def _immutable_tags(props: Props, ctx: Context) -> Iterable[str]:
    if props.get("imageTagMutability") != "IMMUTABLE":
        yield f"image tags are {props.get('imageTagMutability') or 'MUTABLE'}: a pushed tag can be re-pointed"


def _scan_on_push(props: Props, ctx: Context) -> Iterable[str]:
    if dig(props, "imageScanningConfiguration", "scanOnPush") is not True:
        yield "images are not scanned for vulnerabilities on push"


def _ecr_kms(props: Props, ctx: Context) -> Iterable[str]:
    kinds = [c.get("encryptionType") for c in as_list(props.get("encryptionConfigurations"))]
    if "KMS" not in kinds:
        yield "repository is not encrypted with KMS (encryptionType KMS)"


def _ecr_lifecycle(resources: list[Resource], ctx: Context) -> Iterable[tuple[str | None, str]]:
    policies = [r for r in resources if r.type == ECR_LIFECYCLE]
    for repository in (r for r in resources if r.type in ECR_REPOSITORY):
        mine = [p for p in policies if p.depends_on(repository.urn)]
        if not mine:
            yield (
                repository.urn,
                f"repository {repository.name} has no lifecycle policy: every image is kept and paid for",
            )
            continue
        rules = as_list(_document(mine[0].props.get("policy")).get("rules"))
        if not any(dig(rule, "selection", "countType") == "imageCountMoreThan" for rule in rules):
            yield repository.urn, f"repository {repository.name}'s lifecycle policy does not bound the image count"


RULES = [
    Rule(
        "aws-eks-cluster-enable-irsa",
        "Without an OIDC provider pods fall back to the node's role, which every pod on the node shares.",
        Severity.HIGH,
        "Create an aws.iam.OpenIdConnectProvider from the cluster's OIDC issuer (the Cluster component does).",
        stack_check=_irsa,
    ),
    Rule(
        "aws-s3-bucket-enable-encryption",
        "Model artifacts and data are confidential: every bucket needs a server-side encryption configuration.",
        Severity.HIGH,
        "Add an aws.s3.BucketServerSideEncryptionConfiguration for the bucket (aws:kms with a rotating key).",
        stack_check=_companion(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            "encryption configuration",
        ),
    ),
    Rule(
        "aws-s3-bucket-enable-versioning",
        "Versioning keeps every artifact version, so an overwritten or deleted model can be restored.",
        Severity.MEDIUM,
        "Add an aws.s3.BucketVersioning with status Enabled.",
        stack_check=_companion(
            "aws:s3/bucketVersioning:BucketVersioning",
            "versioning (Enabled)",
            lambda p: dig(p, "versioningConfiguration", "status") == "Enabled",
        ),
    ),
    Rule(
        "aws-s3-bucket-disallow-public-access",
        "A public bucket leaks models and data: every bucket needs a public access block with all four flags.",
        Severity.CRITICAL,
        "Add an aws.s3.BucketPublicAccessBlock with all four block/ignore/restrict flags true.",
        stack_check=_companion(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            "public access block with every flag on",
            lambda p: not list(_public_access_blocked(p)),
        ),
    ),
    Rule(
        "aws-s3-bucket-enable-lifecycle",
        "Without lifecycle rules old artifact versions and abandoned uploads are paid for forever.",
        Severity.LOW,
        "Add an aws.s3.BucketLifecycleConfiguration (archive old versions, abort incomplete uploads).",
        stack_check=_companion(
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "lifecycle configuration"
        ),
    ),
    Rule(
        "aws-s3-bucket-configure-tls-only",
        "Requests without TLS expose credentials and data in transit.",
        Severity.HIGH,
        "Add a bucket policy that denies s3:* when aws:SecureTransport is false.",
        stack_check=_companion("aws:s3/bucketPolicy:BucketPolicy", "TLS-only bucket policy", _tls_only),
    ),
    Rule(
        "aws-s3-publicaccessblock-enable-all-flags",
        "A public access block with a flag off still lets public ACLs or policies through.",
        Severity.HIGH,
        "Set blockPublicAcls, blockPublicPolicy, ignorePublicAcls and restrictPublicBuckets to true.",
        ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",),
        check=lambda p, c: _public_access_blocked(p),
    ),
    Rule(
        "aws-s3-bucketencryption-configure-kms",
        "A customer-managed KMS key gives rotation, audit and the power to revoke access to artifacts.",
        Severity.MEDIUM,
        "Use sseAlgorithm aws:kms with the stack's KMS key (storage.customer_managed_key: true).",
        ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",),
        check=_kms_encryption,
        config_defaults={"require_kms": True},
    ),
    Rule(
        "aws-kms-key-enable-rotation",
        "Rotating keys limits what one leaked key version can decrypt.",
        Severity.MEDIUM,
        "Set enable_key_rotation=True on the key.",
        ("aws:kms/key:Key",),
        check=_key_rotation,
    ),
    Rule(
        "aws-eks-cluster-disallow-open-endpoint",
        "A Kubernetes API open to the internet is one credential leak away from a compromised cluster.",
        Severity.CRITICAL,
        "Leave cluster.endpoint_public_access_cidrs empty (private endpoint) or list your VPN/office ranges.",
        ("aws:eks/cluster:Cluster",),
        check=_open_endpoint,
    ),
    Rule(
        "aws-eks-cluster-enable-secrets-encryption",
        "Kubernetes secrets (database and admin passwords) must be envelope-encrypted with KMS.",
        Severity.HIGH,
        "Set encryptionConfig with resources ['secrets'] and a KMS key.",
        ("aws:eks/cluster:Cluster",),
        check=_secrets_encryption,
    ),
    Rule(
        "aws-eks-cluster-enable-control-plane-logging",
        "Audit and API logs are how an incident on the cluster is investigated.",
        Severity.MEDIUM,
        "Enable the api, audit and authenticator control-plane log types.",
        ("aws:eks/cluster:Cluster",),
        check=_control_plane_logs,
        config_defaults={"log_types": ["api", "audit", "authenticator"]},
    ),
    Rule(
        "aws-eks-nodegroup-configure-autoscaling-limits",
        "An unbounded node group turns a runaway job into an unbounded bill.",
        Severity.MEDIUM,
        "Set scalingConfig.maxSize within the environment's ceiling.",
        ("aws:eks/nodeGroup:NodeGroup",),
        check=_autoscaling_limits,
        config_defaults={"max_nodes": 50},
    ),
    Rule(
        "aws-eks-nodegroup-configure-spot-taint",
        "Spot nodes can vanish with two minutes' notice: only interruptible work may run there, "
        "and idle pools cost nothing.",
        Severity.MEDIUM,
        "Give spot node groups a NoSchedule taint (workload=batch) and minSize 0.",
        ("aws:eks/nodeGroup:NodeGroup",),
        check=_spot_taint,
    ),
    Rule(
        "aws-iam-policy-disallow-wildcard-actions",
        "Wildcard actions, or write actions on every resource, grant far more than an app or a deploy needs.",
        Severity.HIGH,
        "List the actions, and scope write actions to ARNs or to a tag condition.",
        ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy"),
        check=_wildcards,
    ),
    Rule(
        "aws-iam-role-configure-github-trust",
        "A GitHub OIDC trust without an exact repository and environment lets any repository or branch deploy.",
        Severity.CRITICAL,
        "Condition StringEquals on token.actions.githubusercontent.com:sub = "
        "repo:<owner>/<repo>:environment:<env>, and on aud.",
        ("aws:iam/role:Role",),
        check=_github_trust,
    ),
    Rule(
        "aws-iam-accesskey-disallow-creation",
        "Long-lived access keys leak and never expire; CI uses OIDC and people use SSO.",
        Severity.CRITICAL,
        "Remove the access key; use the GitHub OIDC deploy role or SSO.",
        ("aws:iam/accessKey:AccessKey", "aws:iam/userLoginProfile:UserLoginProfile"),
        check=_no_access_keys,
    ),
    Rule(
        "aws-cloudwatch-loggroup-configure-retention",
        "Logs kept forever cost money forever.",
        Severity.LOW,
        "Set retention_in_days (monitoring.log_retention_days).",
        ("aws:cloudwatch/logGroup:LogGroup",),
        check=_retention,
    ),
    Rule(
        "aws-budgets-budget-configure-notifications",
        "A budget nobody hears about does not stop a surprise bill.",
        Severity.MEDIUM,
        "Add ACTUAL and FORECASTED notifications with subscribers.",
        ("aws:budgets/budget:Budget",),
        check=_budget_notifications,
    ),
    Rule(
        "aws-ecr-repository-disallow-mutable-tags",
        "A mutable tag can be pushed over: the same name then means different code.",
        Severity.HIGH,
        "Set image_tag_mutability=IMMUTABLE.",
        ECR_REPOSITORY,
        check=_immutable_tags,
    ),
    Rule(
        "aws-ecr-repository-enable-scan-on-push",
        "Every image should be scanned for known vulnerabilities before it runs.",
        Severity.MEDIUM,
        "Set image_scanning_configuration.scan_on_push=true.",
        ECR_REPOSITORY,
        check=_scan_on_push,
    ),
    Rule(
        "aws-ecr-repository-enable-kms-encryption",
        "Images hold the code and its dependencies: encrypt them with KMS like the artifacts.",
        Severity.MEDIUM,
        "Set encryption_configurations=[{encryption_type: KMS, kms_key: <the stack's key>}].",
        ECR_REPOSITORY,
        check=_ecr_kms,
    ),
    Rule(
        "aws-ecr-repository-configure-lifecycle",
        "Without a lifecycle policy every image ever pushed is stored and paid for.",
        Severity.LOW,
        "Add an aws.ecr.LifecyclePolicy that keeps the newest N images (imageCountMoreThan).",
        stack_check=_ecr_lifecycle,
    ),
]

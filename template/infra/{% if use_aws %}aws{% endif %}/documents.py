"""IAM policy documents as plain data: built here, inspected by tests and policies, serialised by components.

Components resolve their outputs first (`Output.all(...).apply`) and call these with plain strings,
so tests and policies inspect exactly the JSON that reaches AWS.
"""

from __future__ import annotations

from typing import Any

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"

Document = dict[str, Any]


def document(*statements: dict[str, Any]) -> Document:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def service_trust(service: str) -> Document:
    """Trust for an AWS service principal (`eks.amazonaws.com`, `ec2.amazonaws.com`)."""
    return document(
        {"Sid": "ServiceAssumes", "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    )


def github_trust(provider_arn: Any, repository: str, environment: str) -> Document:
    """Only workflow jobs of `repository` that run in the GitHub environment `environment` may assume the role.

    Binding `sub` to `repo:<owner>/<name>:environment:<env>` (not `repo:<owner>/<name>:*`) means a
    branch or a fork cannot deploy: the environment's protection rules are part of the trust.
    """
    return document(
        {
            "Sid": "GithubEnvironmentDeploys",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                    f"{GITHUB_OIDC_HOST}:sub": f"repo:{repository}:environment:{environment}",
                }
            },
        }
    )


def irsa_trust(provider_arn: Any, issuer_host: Any, namespace: str, service_account: str) -> Document:
    """IRSA: only the Kubernetes service account `namespace/service_account` of this cluster may assume the role.

    `issuer_host` is the cluster's OIDC issuer without `https://`; the condition keys are built from it,
    so it must be a plain string here (the component resolves it with `apply`).
    """
    return document(
        {
            "Sid": "ServiceAccountAssumes",
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{issuer_host}:aud": STS_AUDIENCE,
                    f"{issuer_host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                }
            },
        }
    )


def bucket_access(bucket_arn: str, key_arn: str | None, *, write: bool) -> Document:
    """Least-privilege access to one bucket (and its KMS key): list + read, plus put/delete when `write`."""
    object_actions = ["s3:GetObject", "s3:GetObjectVersion"]
    if write:
        object_actions += ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": bucket_arn,
        },
        {"Sid": "Objects", "Effect": "Allow", "Action": object_actions, "Resource": f"{bucket_arn}/*"},
    ]
    if key_arn is not None:
        key_actions = ["kms:Decrypt", "kms:DescribeKey"]
        if write:
            key_actions += ["kms:Encrypt", "kms:GenerateDataKey"]
        statements.append({"Sid": "BucketKey", "Effect": "Allow", "Action": key_actions, "Resource": key_arn})
    return document(*statements)


def registry_read(repository_arns: str) -> Document:
    """Reading images and their signatures (the image verifier): pull on the stack's repositories, and the
    registry login token, which names no resource and grants nothing on a repository by itself."""
    return document(
        {"Sid": "RegistryLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Sid": "ReadImages", "Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": repository_arns},
    )


def tls_only_bucket_policy(bucket_arn: str) -> Document:
    """Deny every request that does not use TLS (and TLS older than 1.2)."""
    both = [bucket_arn, f"{bucket_arn}/*"]
    return document(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": both,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            "Sid": "DenyOldTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": both,
            "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
        },
    )


def kms_key_policy(account_id: str, region: str, *, log_groups: bool = False) -> Document:
    """Key policy: the account administers the key through IAM; CloudWatch Logs may use it when `log_groups`."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AccountAdministersThroughIam",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]
    if log_groups:
        statements.append(
            {
                "Sid": "CloudWatchLogsEncrypts",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account_id}:log-group:*"}
                },
            }
        )
    return document(*statements)


# What `pulumi up` of this program reads, everywhere (read-only wildcards are not write access).
DEPLOY_READ_ACTIONS = [
    "ec2:Describe*",
    "eks:Describe*",
    "eks:List*",
    "iam:Get*",
    "iam:List*",
    "kms:Describe*",
    "kms:Get*",
    "kms:List*",
    "logs:Describe*",
    "logs:List*",
    "cloudwatch:Describe*",
    "cloudwatch:List*",
    "budgets:ViewBudget",
    "budgets:ListTagsForResource",
    "sns:Get*",
    "sns:List*",
    "s3:ListAllMyBuckets",
    "sts:GetCallerIdentity",
    "ecr:GetAuthorizationToken",  # `docker login` to the account's registry; grants nothing on a repository
    "ecr:DescribeRepositories",
]
# What pushing an image needs on a repository (pulling needs the first three).
ECR_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
ECR_PUSH_ACTIONS = [
    *ECR_PULL_ACTIONS,
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:DescribeImages",
    "ecr:ListImages",
]


# Write actions, each statement scoped to the stack's names (ARN prefix) or to its `project` tag.
DEPLOY_WRITE_BY_NAME: dict[str, list[str]] = {
    "s3": [
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketVersioning",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketPublicAccessBlock",
        "s3:PutBucketOwnershipControls",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketTagging",
        "s3:GetBucketPolicy",
        "s3:GetBucketVersioning",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketOwnershipControls",
        "s3:GetLifecycleConfiguration",
        "s3:GetBucketTagging",
        "s3:ListBucket",
        # The provider reads every sub-configuration of a bucket, whether the stack sets it or not.
        "s3:GetBucketAcl",
        "s3:GetBucketCORS",
        "s3:GetBucketWebsite",
        "s3:GetBucketLogging",
        "s3:GetBucketRequestPayment",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetAccelerateConfiguration",
        "s3:GetReplicationConfiguration",
    ],
    "iam": [
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:UpdateRole",
        "iam:UpdateAssumeRolePolicy",
        "iam:TagRole",
        "iam:UntagRole",
        "iam:PutRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:PassRole",
        "iam:CreateOpenIDConnectProvider",
        "iam:DeleteOpenIDConnectProvider",
        "iam:TagOpenIDConnectProvider",
        "iam:UntagOpenIDConnectProvider",
        "iam:UpdateOpenIDConnectProviderThumbprint",
        "iam:AddClientIDToOpenIDConnectProvider",
        "iam:RemoveClientIDFromOpenIDConnectProvider",
        "iam:CreateServiceLinkedRole",
    ],
    "eks": [
        "eks:DeleteCluster",
        "eks:UpdateClusterConfig",
        "eks:UpdateClusterVersion",
        "eks:TagResource",
        "eks:UntagResource",
        "eks:CreateNodegroup",
        "eks:DeleteNodegroup",
        "eks:UpdateNodegroupConfig",
        "eks:UpdateNodegroupVersion",
        "eks:CreateAccessEntry",
        "eks:DeleteAccessEntry",
        "eks:UpdateAccessEntry",
        "eks:AssociateAccessPolicy",
        "eks:DisassociateAccessPolicy",
        "eks:CreateAddon",
        "eks:UpdateAddon",
        "eks:DeleteAddon",
    ],
    "logs": [
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:PutRetentionPolicy",
        "logs:AssociateKmsKey",
        "logs:TagResource",
        "logs:UntagResource",
    ],
    "cloudwatch": ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource"],
    "sns": [
        "sns:CreateTopic",
        "sns:DeleteTopic",
        "sns:SetTopicAttributes",
        "sns:Subscribe",
        "sns:TagResource",
        "sns:UntagResource",
    ],
    "budgets": ["budgets:ModifyBudget", "budgets:TagResource"],
    "ecr": [
        "ecr:CreateRepository",
        "ecr:DeleteRepository",
        "ecr:PutImageTagMutability",
        "ecr:PutImageScanningConfiguration",
        "ecr:PutLifecyclePolicy",
        "ecr:DeleteLifecyclePolicy",
        "ecr:GetLifecyclePolicy",
        "ecr:SetRepositoryPolicy",
        "ecr:DeleteRepositoryPolicy",
        "ecr:GetRepositoryPolicy",
        "ecr:TagResource",
        "ecr:UntagResource",
        "ecr:ListTagsForResource",
        *ECR_PUSH_ACTIONS,
    ],
}
# Creations that no resource ARN can scope (AWS's catalog lists only `*` for them): allowed on `*` only
# when the request tags the new resource `project=<project>`.
DEPLOY_CREATE_UNSCOPED = ["eks:CreateCluster", "kms:CreateKey"]
# Writes that no ARN and no key of their own can scope (the catalog lists `*` and no condition key):
# the SNS subscription calls name a subscription; only the global aws:RequestedRegion narrows them, to the
# stack's region.
DEPLOY_WRITE_UNSCOPED = ["sns:Unsubscribe", "sns:SetSubscriptionAttributes"]
# EC2 and KMS name nothing at creation: their writes are allowed only on resources tagged `project=<project>`.
DEPLOY_WRITE_BY_TAG = [
    "ec2:CreateVpc",
    "ec2:DeleteVpc",
    "ec2:ModifyVpcAttribute",
    "ec2:CreateSubnet",
    "ec2:ModifySubnetAttribute",
    "ec2:DeleteSubnet",
    "ec2:CreateInternetGateway",
    "ec2:DeleteInternetGateway",
    "ec2:AttachInternetGateway",
    "ec2:DetachInternetGateway",
    "ec2:AllocateAddress",
    "ec2:ReleaseAddress",
    "ec2:CreateNatGateway",
    "ec2:DeleteNatGateway",
    "ec2:CreateRouteTable",
    "ec2:DeleteRouteTable",
    "ec2:CreateRoute",
    "ec2:DeleteRoute",
    "ec2:AssociateRouteTable",
    "ec2:DisassociateRouteTable",
    "ec2:CreateTags",
    "ec2:CreateLaunchTemplate",
    "ec2:DeleteLaunchTemplate",
    "kms:ScheduleKeyDeletion",
    "kms:EnableKeyRotation",
    "kms:PutKeyPolicy",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateKeyDescription",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:CreateGrant",
]


def deploy_policy(account_id: str, region: str, name_prefix: str, project: str) -> Document:
    """What the CI deploy role may do: read broadly, write only what this stack names or tags."""
    arn_patterns = {
        "s3": [f"arn:aws:s3:::{name_prefix}-*"],
        "iam": [
            f"arn:aws:iam::{account_id}:role/{name_prefix}-*",
            f"arn:aws:iam::{account_id}:oidc-provider/*",
            f"arn:aws:iam::{account_id}:role/aws-service-role/*",
        ],
        "eks": [
            f"arn:aws:eks:{region}:{account_id}:cluster/{name_prefix}-*",
            f"arn:aws:eks:{region}:{account_id}:nodegroup/{name_prefix}-*/*/*",
            f"arn:aws:eks:{region}:{account_id}:access-entry/{name_prefix}-*/*",
            f"arn:aws:eks:{region}:{account_id}:addon/{name_prefix}-*/*/*",
        ],
        "logs": [f"arn:aws:logs:{region}:{account_id}:log-group:/aws/*/{name_prefix}-*"],
        "cloudwatch": [f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{name_prefix}-*"],
        "sns": [f"arn:aws:sns:{region}:{account_id}:{name_prefix}-*"],
        "budgets": [f"arn:aws:budgets::{account_id}:budget/{name_prefix}-*"],
        "ecr": [f"arn:aws:ecr:{region}:{account_id}:repository/{name_prefix}/*"],
    }
    statements: list[dict[str, Any]] = [
        {"Sid": "Read", "Effect": "Allow", "Action": DEPLOY_READ_ACTIONS, "Resource": "*"},
    ]
    for service, actions in DEPLOY_WRITE_BY_NAME.items():
        statements.append(
            {
                "Sid": f"Write{service.capitalize()}",
                "Effect": "Allow",
                "Action": actions,
                "Resource": arn_patterns[service],
            }
        )
    statements += [
        {
            "Sid": "CreateUnscopedTagged",
            "Effect": "Allow",
            "Action": DEPLOY_CREATE_UNSCOPED,
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestTag/project": project}},
        },
        {
            "Sid": "WriteUnscoped",
            "Effect": "Allow",
            "Action": DEPLOY_WRITE_UNSCOPED,
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
        },
    ]
    tagged = [f"arn:aws:ec2:{region}:{account_id}:*", f"arn:aws:kms:{region}:{account_id}:*"]
    # Creating: the request must carry the tag. Changing or deleting: the resource must already carry it.
    for sid, condition_key in (("CreateTagged", "aws:RequestTag/project"), ("ChangeTagged", "aws:ResourceTag/project")):
        statements.append(
            {
                "Sid": sid,
                "Effect": "Allow",
                "Action": DEPLOY_WRITE_BY_TAG,
                "Resource": tagged,
                "Condition": {"StringEquals": {condition_key: project}},
            }
        )
    return document(*statements)


def repository_policy(push_role_arns: list[str], pull_role_arns: list[str]) -> Document:
    """ECR repository policy: the deploy role pushes, the cluster's nodes and the image verifier pull, no
    other principal is named."""
    return document(
        {"Sid": "DeployPushes", "Effect": "Allow", "Principal": {"AWS": push_role_arns}, "Action": ECR_PUSH_ACTIONS},
        {"Sid": "Pull", "Effect": "Allow", "Principal": {"AWS": pull_role_arns}, "Action": ECR_PULL_ACTIONS},
    )


def lifecycle_policy(keep_last: int, untagged_days: int = 7) -> dict[str, Any]:
    """ECR lifecycle: untagged leftovers go after `untagged_days`; of the rest, the newest `keep_last` stay."""
    return {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"untagged images older than {untagged_days} days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": untagged_days,
                },
                "action": {"type": "expire"},
            },
            {
                "rulePriority": 2,
                "description": f"keep the newest {keep_last} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_last},
                "action": {"type": "expire"},
            },
        ]
    }

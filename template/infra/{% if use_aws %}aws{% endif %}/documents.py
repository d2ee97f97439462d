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


def flow_logs_trust(account_id: str, region: str) -> Document:
    """The VPC flow-logs service may assume the delivery role for this account's flow logs only."""
    return document(
        {
            "Sid": "FlowLogsAssume",
            "Effect": "Allow",
            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": account_id},
                "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{region}:{account_id}:vpc-flow-log/*"},
            },
        }
    )


def flow_logs_delivery(log_group_arn: str) -> Document:
    """What the flow-logs service writes with: streams and events of one log group."""
    return document(
        {
            "Sid": "DeliverFlowLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
        }
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

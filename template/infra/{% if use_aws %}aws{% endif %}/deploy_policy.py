"""The GitHub deploy role's permissions: read broadly, write only what the stack names or tags, and the
few actions no ARN can scope, each as AWS's catalog allows (`tests/infra/iam_catalog.py` checks them,
`tests/infra/test_deploy_completeness.py` checks they cover every planned resource type)."""

from __future__ import annotations

from typing import Any

from infra.aws.documents import ECR_PUSH_ACTIONS, Document, document

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
    "ec2:RevokeSecurityGroupIngress",  # the default group's rules (network.Network); tagged first
    "ec2:RevokeSecurityGroupEgress",
    "ec2:CreateFlowLogs",
    "ec2:DeleteFlowLogs",
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

"""`ObjectStore`: the stack's artifact bucket, private, encrypted with its own rotating KMS key, versioned."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.documents import kms_key_policy, tls_only_bucket_policy


@dataclass(frozen=True)
class ObjectStoreArgs:
    account_id: pulumi.Input[str]
    region: str
    tags: dict[str, str]
    customer_managed_key: bool = True
    force_destroy: bool = False
    archive_after_days: int = 30
    noncurrent_expire_days: int = 365
    abort_incomplete_upload_days: int = 7

    def __post_init__(self) -> None:
        if self.noncurrent_expire_days <= self.archive_after_days:
            raise ValueError("ObjectStoreArgs.noncurrent_expire_days must be greater than archive_after_days")


class ObjectStore(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    key_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: ObjectStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:ObjectStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        key: aws.kms.Key | None = None
        if args.customer_managed_key:
            key = aws.kms.Key(
                f"{name}-key",
                description=f"{name}: artifact bucket encryption",
                enable_key_rotation=True,
                deletion_window_in_days=30,
                policy=pulumi.Output.from_input(args.account_id).apply(
                    lambda account: json.dumps(kms_key_policy(account, args.region))
                ),
                tags=args.tags,
                opts=child,
            )
            aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}-artifacts", target_key_id=key.key_id, opts=child)

        bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=args.force_destroy, tags=args.tags, opts=child)
        on_bucket = pulumi.ResourceOptions(parent=bucket)

        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=on_bucket,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=on_bucket,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=on_bucket,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="aws:kms" if key else "AES256",
                        kms_master_key_id=key.arn if key else None,
                    ),
                    bucket_key_enabled=key is not None,
                )
            ],
            opts=on_bucket,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="archive-old-artifacts",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    # Intelligent-Tiering: rarely read artifacts get cheaper, with no retrieval fee when a
                    # rollback needs one; superseded versions go to Glacier Instant Retrieval.
                    transitions=[
                        aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                            days=args.archive_after_days, storage_class="INTELLIGENT_TIERING"
                        )
                    ],
                    noncurrent_version_transitions=[
                        aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionTransitionArgs(
                            noncurrent_days=args.archive_after_days, storage_class="GLACIER_IR"
                        )
                    ],
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=args.noncurrent_expire_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=args.abort_incomplete_upload_days
                    ),
                )
            ],
            opts=on_bucket,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_access]),
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.key_arn = key.arn if key else None
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

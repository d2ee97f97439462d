"""`ContainerRegistry`: one ECR repository per app image: immutable tags, scanned on push, KMS, lifecycle."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.aws.documents import lifecycle_policy, repository_policy
from infra.naming import ecr_registry, ecr_repository


@dataclass(frozen=True)
class ContainerRegistryArgs:
    account_id: pulumi.Input[str]
    region: str
    project: str
    environment: str
    images: tuple[str, ...]
    # Who pushes (the deploy role) and who pulls (the node role): nobody else is named.
    push_role_arns: list[pulumi.Input[str]]
    pull_role_arns: list[pulumi.Input[str]]
    keep_last: int
    tags: dict[str, str]
    # The stack's KMS key; None: ECR's AWS-managed KMS key.
    key_arn: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not self.push_role_arns or not self.pull_role_arns:
            raise ValueError("ContainerRegistryArgs needs at least one pushing and one pulling role")
        if self.keep_last < 1:
            raise ValueError(f"ContainerRegistryArgs.keep_last must be positive (got {self.keep_last})")


class ContainerRegistry(pulumi.ComponentResource):
    repository_names: dict[str, str]
    registry: pulumi.Output[str]

    def __init__(self, name: str, args: ContainerRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:ContainerRegistry", name, None, opts)
        policy = pulumi.Output.all(list(args.push_role_arns), list(args.pull_role_arns)).apply(
            lambda arns: json.dumps(repository_policy(arns[0], arns[1]))
        )
        self.repository_names = {}
        for image in args.images:
            repository = aws.ecr.Repository(
                f"{name}-{image}",
                name=ecr_repository(args.project, args.environment, image),
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
                encryption_configurations=[
                    aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS", kms_key=args.key_arn)
                ],
                # Deleting the stack must not delete the images a rollback would need.
                force_delete=False,
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            on_repository = pulumi.ResourceOptions(parent=repository)
            aws.ecr.LifecyclePolicy(
                f"{name}-{image}-lifecycle",
                repository=repository.name,
                policy=json.dumps(lifecycle_policy(args.keep_last)),
                opts=on_repository,
            )
            aws.ecr.RepositoryPolicy(
                f"{name}-{image}-access", repository=repository.name, policy=policy, opts=on_repository
            )
            self.repository_names[image] = ecr_repository(args.project, args.environment, image)
        self.registry = pulumi.Output.from_input(args.account_id).apply(lambda a: ecr_registry(a, args.region))
        self.register_outputs({"registry": self.registry, "repositories": self.repository_names})

    def image(self, image: str, digest: str) -> pulumi.Output[str]:
        """`<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:…`: what the cluster pulls."""
        return self.registry.apply(lambda registry: f"{registry}/{self.repository_names[image]}@{digest}")

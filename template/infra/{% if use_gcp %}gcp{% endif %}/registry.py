"""`ContainerRegistry`: the stack's Artifact Registry Docker repository: immutable tags, cleanup policies."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.naming import artifact_registry_path, artifact_repository


@dataclass(frozen=True)
class ContainerRegistryArgs:
    project: str
    region: str
    stack_project: str
    environment: str
    # Who pushes (the deploy service account) and who pulls (the nodes' service account): nobody else.
    push_members: list[pulumi.Input[str]]
    pull_members: list[pulumi.Input[str]]
    keep_last: int
    labels: dict[str, str]
    # The stack's registry key (CMEK, `cluster.Keys`); its grant to Artifact Registry's agent comes first.
    kms_key_name: pulumi.Input[str] | None = None
    # Untagged images (a tag moved away, a failed push) are deleted after this many days.
    untagged_days: int = 7

    def __post_init__(self) -> None:
        if not self.push_members or not self.pull_members:
            raise ValueError("ContainerRegistryArgs needs at least one pushing and one pulling member")
        if self.keep_last < 1:
            raise ValueError(f"ContainerRegistryArgs.keep_last must be positive (got {self.keep_last})")


class ContainerRegistry(pulumi.ComponentResource):
    path: str

    def __init__(self, name: str, args: ContainerRegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:ContainerRegistry", name, None, opts)
        repository = gcp.artifactregistry.Repository(
            f"{name}-repository",
            project=args.project,
            location=args.region,
            repository_id=artifact_repository(args.stack_project, args.environment),
            format="DOCKER",
            kms_key_name=args.kms_key_name,
            description=f"{args.stack_project} {args.environment}: app images, pushed by the images workflow",
            docker_config=gcp.artifactregistry.RepositoryDockerConfigArgs(immutable_tags=True),
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                # KEEP wins over DELETE: the newest `keep_last` versions of each image always stay.
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-newest",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        keep_count=args.keep_last
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-untagged",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="UNTAGGED", older_than=f"{args.untagged_days * 86400}s"
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-older",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        tag_state="ANY", older_than=f"{90 * 86400}s"
                    ),
                ),
            ],
            labels=args.labels,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_repository = pulumi.ResourceOptions(parent=repository)
        for role, members in (
            ("roles/artifactregistry.writer", args.push_members),
            ("roles/artifactregistry.reader", args.pull_members),
        ):
            for index, member in enumerate(members):
                gcp.artifactregistry.RepositoryIamMember(
                    f"{name}-{role.rsplit('.', 1)[-1]}-{index}",
                    project=args.project,
                    location=args.region,
                    repository=repository.repository_id,
                    role=role,
                    member=member,
                    opts=on_repository,
                )
        self.path = artifact_registry_path(args.region, args.project, args.stack_project, args.environment)
        self.register_outputs({"path": self.path})

    def image(self, image: str, digest: str) -> str:
        """`<region>-docker.pkg.dev/<project>/<repository>/<image>@sha256:…`: what the cluster pulls."""
        return f"{self.path}/{image}@{digest}"

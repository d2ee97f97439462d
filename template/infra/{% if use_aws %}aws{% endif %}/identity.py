"""Keyless identities: `GithubDeployIdentity` (CI deploys through OIDC) and `WorkloadRoles` (IRSA for the apps)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws

from infra.aws.deploy_policy import deploy_policy
from infra.aws.documents import GITHUB_OIDC_HOST, STS_AUDIENCE, bucket_access, github_trust, irsa_trust, registry_read


@dataclass(frozen=True)
class GithubDeployIdentityArgs:
    account_id: pulumi.Input[str]
    region: str
    repository: str
    environment: str
    role_name: str
    name_prefix: str
    project: str
    tags: dict[str, str]
    # The GitHub OIDC provider is one per account: the first stack in an account creates it.
    create_provider: bool = True

    def __post_init__(self) -> None:
        if self.repository.count("/") != 1:
            raise ValueError(f"GithubDeployIdentityArgs.repository must be owner/name (got {self.repository!r})")


class GithubDeployIdentity(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: GithubDeployIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:GithubDeployIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account = pulumi.Output.from_input(args.account_id)
        if args.create_provider:
            provider_arn: pulumi.Output[str] = aws.iam.OpenIdConnectProvider(
                f"{name}-github-oidc",
                url=f"https://{GITHUB_OIDC_HOST}",
                client_id_lists=[STS_AUDIENCE],
                tags=args.tags,
                opts=child,
            ).arn
        else:
            provider_arn = account.apply(lambda a: f"arn:aws:iam::{a}:oidc-provider/{GITHUB_OIDC_HOST}")
        role = aws.iam.Role(
            f"{name}-deploy",
            name=args.role_name,
            description=f"pulumi up from {args.repository} in the GitHub environment {args.environment}",
            assume_role_policy=provider_arn.apply(
                lambda arn: json.dumps(github_trust(arn, args.repository, args.environment))
            ),
            max_session_duration=3600,
            tags=args.tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-deploy",
            role=role.name,
            policy=account.apply(lambda a: json.dumps(deploy_policy(a, args.region, args.name_prefix, args.project))),
            opts=pulumi.ResourceOptions(parent=role),
        )
        self.role_arn = role.arn
        self.register_outputs({"role_arn": self.role_arn})


@dataclass(frozen=True)
class WorkloadRole:
    namespace: str
    service_account: str
    write: bool
    # What the role reaches: the stack's bucket (the apps) or its image repositories (the image verifier).
    reaches: Literal["bucket", "registry"] = "bucket"


@dataclass(frozen=True)
class WorkloadRolesArgs:
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_host: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str] | None
    roles: dict[str, WorkloadRole]
    name_prefix: str
    tags: dict[str, str]
    # `arn:aws:ecr:<region>:<account>:repository/<stem>/*`: the stack's image repositories.
    repositories_arn: pulumi.Input[str] | None = None


class WorkloadRoles(pulumi.ComponentResource):
    """One IAM role per app service account (IRSA), each limited to the stack's bucket, or (the image
    verifier) to reading the stack's image repositories."""

    role_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: WorkloadRolesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:aws:WorkloadRoles", name, None, opts)
        self.role_arns = {}
        for app, spec in args.roles.items():
            trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_issuer_host).apply(
                functools.partial(_trust_json, spec)
            )
            role = aws.iam.Role(
                f"{name}-{app}",
                name=f"{args.name_prefix}-{app}",
                assume_role_policy=trust,
                tags=args.tags,
                opts=pulumi.ResourceOptions(parent=self),
            )
            access = pulumi.Output.all(args.bucket_arn, args.key_arn, args.repositories_arn).apply(
                functools.partial(_access_json, spec)
            )
            aws.iam.RolePolicy(f"{name}-{app}", role=role.name, policy=access, opts=pulumi.ResourceOptions(parent=role))
            self.role_arns[app] = role.arn
        self.register_outputs({"role_arns": self.role_arns})


def _trust_json(spec: WorkloadRole, values: list[str]) -> str:
    provider_arn, issuer_host = values
    return json.dumps(irsa_trust(provider_arn, issuer_host, spec.namespace, spec.service_account))


def _access_json(spec: WorkloadRole, values: list[str | None]) -> str:
    bucket_arn, key_arn, repositories_arn = values
    if spec.reaches == "registry":
        if repositories_arn is None:
            raise ValueError(f"WorkloadRole {spec.service_account}: reading images needs repositories_arn")
        return json.dumps(registry_read(repositories_arn))
    return json.dumps(bucket_access(str(bucket_arn), key_arn, write=spec.write))

"""Keyless identities on GCP: `GithubDeployIdentity` (Workload Identity Federation) and `WorkloadServiceAccounts`."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.naming import gcp_name

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
# What `pulumi up` of this program manages in the project. Project-level roles: GCP has no name-scoped
# equivalent of the AWS ARN patterns, so the project is the boundary (one project per environment is best).
DEPLOY_ROLES = [
    "roles/compute.networkAdmin",
    "roles/compute.securityAdmin",  # the firewall rule that lets the control plane reach admission webhooks
    "roles/container.admin",
    "roles/storage.admin",
    "roles/cloudkms.admin",
    "roles/iam.serviceAccountAdmin",
    "roles/iam.serviceAccountUser",
    "roles/iam.workloadIdentityPoolAdmin",
    "roles/resourcemanager.projectIamAdmin",
    "roles/monitoring.editor",
    "roles/logging.configWriter",
    "roles/artifactregistry.admin",  # creates the stack's image repository; pushes by its repository binding
    "roles/binaryauthorization.policyEditor",  # the project's admission policy
    "roles/binaryauthorization.attestorsAdmin",  # the stack's attestor
    # The attestor's note and its reader binding; the images workflow's attestations are its occurrences.
    "roles/containeranalysis.admin",
]


def github_attribute_condition(repository: str, environment: str) -> str:
    """CEL condition of the provider: tokens of other repositories or environments are rejected outright."""
    return f"assertion.repository == '{repository}' && assertion.environment == '{environment}'"


GITHUB_ATTRIBUTES = {
    "google.subject": "assertion.sub",
    "attribute.repository": "assertion.repository",
    "attribute.environment": "assertion.environment",
    "attribute.ref": "assertion.ref",
}


@dataclass(frozen=True)
class GithubDeployIdentityArgs:
    project: str
    name_prefix: str
    repository: str
    environment: str

    def __post_init__(self) -> None:
        if self.repository.count("/") != 1 or "'" in self.repository:
            raise ValueError(f"GithubDeployIdentityArgs.repository must be owner/name (got {self.repository!r})")


class GithubDeployIdentity(pulumi.ComponentResource):
    service_account_email: pulumi.Output[str]
    provider_name: pulumi.Output[str]

    def __init__(self, name: str, args: GithubDeployIdentityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:GithubDeployIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pool = gcp.iam.WorkloadIdentityPool(
            f"{name}-pool",
            workload_identity_pool_id=gcp_name(args.name_prefix, "github", max_length=32),
            project=args.project,
            display_name=f"GitHub {args.environment}"[:32],
            opts=child,
        )
        provider = gcp.iam.WorkloadIdentityPoolProvider(
            f"{name}-provider",
            project=args.project,
            workload_identity_pool_id=pool.workload_identity_pool_id,
            workload_identity_pool_provider_id="github",
            attribute_mapping=GITHUB_ATTRIBUTES,
            attribute_condition=github_attribute_condition(args.repository, args.environment),
            oidc=gcp.iam.WorkloadIdentityPoolProviderOidcArgs(issuer_uri=GITHUB_ISSUER),
            opts=pulumi.ResourceOptions(parent=pool),
        )
        account = gcp.serviceaccount.Account(
            f"{name}-deploy",
            account_id=gcp_name(args.name_prefix, "deploy"),
            display_name=f"pulumi up from {args.repository} ({args.environment})"[:100],
            project=args.project,
            opts=child,
        )
        gcp.serviceaccount.IAMMember(
            f"{name}-deploy-federation",
            service_account_id=account.name,
            role="roles/iam.workloadIdentityUser",
            member=pool.name.apply(
                lambda pool_name: (
                    f"principalSet://iam.googleapis.com/{pool_name}/attribute.environment/{args.environment}"
                )
            ),
            opts=pulumi.ResourceOptions(parent=account),
        )
        member = account.email.apply(lambda email: f"serviceAccount:{email}")
        for role in DEPLOY_ROLES:
            gcp.projects.IAMMember(
                f"{name}-deploy-{role.split('/')[-1]}",
                project=args.project,
                role=role,
                member=member,
                opts=pulumi.ResourceOptions(parent=account),
            )
        self.service_account_email = account.email
        self.provider_name = provider.name
        self.register_outputs({"service_account_email": account.email, "provider_name": provider.name})


@dataclass(frozen=True)
class AppAccount:
    namespace: str
    service_account: str
    write: bool
    # False: no access to the bucket (the image verifier, which only reads the registry it is a reader of).
    bucket: bool = True


@dataclass(frozen=True)
class WorkloadServiceAccountsArgs:
    project: str
    name_prefix: str
    bucket_name: pulumi.Input[str]
    accounts: dict[str, AppAccount]


class WorkloadServiceAccounts(pulumi.ComponentResource):
    """One Google service account per app, used by its Kubernetes service account through Workload Identity."""

    emails: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: WorkloadServiceAccountsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("mlops:gcp:WorkloadServiceAccounts", name, None, opts)
        self.emails = {}
        for app, spec in args.accounts.items():
            account = gcp.serviceaccount.Account(
                f"{name}-{app}",
                account_id=gcp_name(args.name_prefix, app),
                display_name=f"{app} in {spec.namespace}",
                project=args.project,
                opts=pulumi.ResourceOptions(parent=self),
            )
            on_account = pulumi.ResourceOptions(parent=account)
            gcp.serviceaccount.IAMMember(
                f"{name}-{app}-workload-identity",
                service_account_id=account.name,
                role="roles/iam.workloadIdentityUser",
                member=f"serviceAccount:{args.project}.svc.id.goog[{spec.namespace}/{spec.service_account}]",
                opts=on_account,
            )
            self.emails[app] = account.email
            if not spec.bucket:
                continue
            # Bucket-level, not project-level: the app reaches its own bucket and nothing else.
            gcp.storage.BucketIAMMember(
                f"{name}-{app}-bucket",
                bucket=args.bucket_name,
                role="roles/storage.objectUser" if spec.write else "roles/storage.objectViewer",
                member=account.email.apply(lambda email: f"serviceAccount:{email}"),
                opts=on_account,
            )
        self.register_outputs({"emails": self.emails})

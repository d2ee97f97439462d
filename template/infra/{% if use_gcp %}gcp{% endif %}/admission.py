"""`BinaryAuthorization`: GKE itself admits an image only when this stack vouches for it.

The cluster enforces the project's Binary Authorization policy (`Cluster`: PROJECT_SINGLETON_POLICY_ENFORCE;
one project per environment, so the policy is the stack's own):
- The stack's app images need an attestation by its attestor for that exact digest. Only the images
  workflow makes one, right after it signs the digest with cosign (`.github/workflows/images.yml`): the
  attestor's Cloud KMS key signs for the deploy service account, and for nobody else.
- The images outside the stack's registry (the reviewed third-party images, the charts' images, an image
  pinned by reference) are admitted by repository (`allowlist`); inside the app namespace the sigstore
  policy-controller still requires their reviewed digest or signature (`infra/k8s/admission.py`).
- Google's own GKE system images pass by Google's global policy.
Anything else is refused at admission and audit-logged. Unlike policy-controller's webhook, the check
is GKE's: a deleted or failing webhook does not open the door, and it covers every namespace.

Binary Authorization cannot verify cosign's keyless signatures, hence the attestation: the same digest,
vouched for twice, by the same workflow.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

from infra.naming import ATTESTOR_KEY

PublicKey = gcp.binaryauthorization.AttestorAttestationAuthorityNotePublicKeyPkixPublicKeyArgs
SIGNING_ALGORITHM = "EC_SIGN_P256_SHA256"
SIGNER = "roles/cloudkms.signerVerifier"
# What GKE asks Binary Authorization: the project's policy, enforced (not dry-run).
EVALUATION_MODE = "PROJECT_SINGLETON_POLICY_ENFORCE"
# A repository: registry host, then path segments, no wildcard, no tag or digest.
REPOSITORY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")


def repository(image: str) -> str:
    """`registry/path` of an image reference, without its tag or digest."""
    name = image.partition("@")[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.partition(':')[0]}"


def allowlist(images: Iterable[str]) -> list[str]:
    """The policy's name patterns for images admitted without an attestation: each image's repository,
    any tag or digest (`*` matches no `/`, so no other repository's path). A Docker Hub image is also
    listed under `index.docker.io`, the name the registry gives it."""
    patterns = set()
    for image in images:
        repo = repository(image)
        if not REPOSITORY.match(repo) or "." not in repo.split("/", 1)[0]:
            raise ValueError(f"allowlist: {image!r} must be a full reference, registry host first")
        patterns.add(f"{repo}*")
        if repo.startswith("docker.io/"):
            patterns.add(f"index.{repo}*")
    return sorted(patterns)


def allowlisted(patterns: Iterable[str], image: str) -> bool:
    """Binary Authorization's match of a whole reference: `*` any run without `/`, `**` any run at all."""
    for pattern in patterns:
        regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        if re.fullmatch(regex, image):
            return True
    return False


def names_one_repository(pattern: str) -> bool:
    """A pattern that admits one repository's tags and digests, not a registry or an organisation."""
    return pattern.endswith("*") and "*" not in pattern[:-1] and REPOSITORY.match(pattern[:-1]) is not None


@dataclass(frozen=True)
class BinaryAuthorizationArgs:
    project: str
    project_number: pulumi.Input[str]
    key_ring_id: pulumi.Input[str]
    attestor: str  # the attestor's (and its note's) id, `infra.naming.attestor_names`
    # Who may attest (the deploy service account the images workflow runs as): `serviceAccount:…`.
    attesters: list[pulumi.Input[str]]
    # Images admitted without an attestation (`allowlist` makes the patterns).
    unattested: list[str]
    labels: dict[str, str]
    description: str = field(default="")

    def __post_init__(self) -> None:
        if not self.attesters:
            raise ValueError("BinaryAuthorizationArgs.attesters: the images workflow's identity must attest")


class BinaryAuthorization(pulumi.ComponentResource):
    """The attestor (a KMS signing key, a Container Analysis note) and the project's admission policy."""

    attestor: pulumi.Output[str]  # projects/<project>/attestors/<id>
    policy: gcp.binaryauthorization.Policy

    def __init__(self, name: str, args: BinaryAuthorizationArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gcp:BinaryAuthorization", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Asymmetric keys do not rotate: a new version would need the attestor's new public key.
        key = gcp.kms.CryptoKey(
            f"{name}-key",
            name=ATTESTOR_KEY,
            key_ring=args.key_ring_id,
            purpose="ASYMMETRIC_SIGN",
            version_template=gcp.kms.CryptoKeyVersionTemplateArgs(
                algorithm=SIGNING_ALGORITHM, protection_level="SOFTWARE"
            ),
            labels=args.labels,
            opts=child,
        )
        signers = [
            gcp.kms.CryptoKeyIAMMember(
                f"{name}-signer-{index}",
                crypto_key_id=key.id,
                role=SIGNER,
                member=member,
                opts=pulumi.ResourceOptions(parent=key),
            )
            for index, member in enumerate(args.attesters)
        ]
        # Reading the public key needs viewPublicKey, which the deploy identity holds through its signer
        # grant on this key only (cloudkms.admin has no such permission): read it after the grant.
        after_grants = pulumi.Output.all(key.id, *(signer.id for signer in signers)).apply(lambda ids: ids[0])
        version = gcp.kms.get_kms_crypto_key_version_output(crypto_key=after_grants, version=1)
        note = gcp.containeranalysis.Note(
            f"{name}-note",
            name=args.attestor,
            project=args.project,
            attestation_authority=gcp.containeranalysis.NoteAttestationAuthorityArgs(
                hint=gcp.containeranalysis.NoteAttestationAuthorityHintArgs(human_readable_name=args.attestor)
            ),
            opts=child,
        )
        # Binary Authorization reads the attestations attached to the note.
        reader = gcp.containeranalysis.NoteIamMember(
            f"{name}-note-reader",
            project=args.project,
            note=note.name,
            role="roles/containeranalysis.notes.occurrences.viewer",
            member=pulumi.Output.concat(
                "serviceAccount:service-", args.project_number, "@gcp-sa-binaryauthorization.iam.gserviceaccount.com"
            ),
            opts=pulumi.ResourceOptions(parent=note),
        )
        attestor = gcp.binaryauthorization.Attestor(
            f"{name}-attestor",
            name=args.attestor,
            project=args.project,
            description=args.description or "app images built and signed by the images workflow on main",
            attestation_authority_note=gcp.binaryauthorization.AttestorAttestationAuthorityNoteArgs(
                note_reference=note.name.apply(lambda n: f"projects/{args.project}/notes/{n}"),
                public_keys=[
                    gcp.binaryauthorization.AttestorAttestationAuthorityNotePublicKeyArgs(
                        # The id `sign-and-create --keyversion` writes into each attestation.
                        id=pulumi.Output.concat("//cloudkms.googleapis.com/v1/", key.id, "/cryptoKeyVersions/1"),
                        pkix_public_key=PublicKey(
                            public_key_pem=version.public_keys.apply(lambda keys: keys[0].pem if keys else ""),
                            signature_algorithm=SIGNING_ALGORITHM,
                        ),
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[reader]),
        )
        self.attestor = attestor.name.apply(lambda n: f"projects/{args.project}/attestors/{n}")
        patterns = allowlist(args.unattested)
        self.policy = gcp.binaryauthorization.Policy(
            f"{name}-policy",
            project=args.project,
            description=f"{args.description or args.attestor}: attested app images, listed repositories",
            global_policy_evaluation_mode="ENABLE",  # Google's GKE system images
            admission_whitelist_patterns=[
                gcp.binaryauthorization.PolicyAdmissionWhitelistPatternArgs(name_pattern=pattern)
                for pattern in patterns
            ],
            default_admission_rule=gcp.binaryauthorization.PolicyDefaultAdmissionRuleArgs(
                evaluation_mode="REQUIRE_ATTESTATION",
                enforcement_mode="ENFORCED_BLOCK_AND_AUDIT_LOG",
                require_attestations_bies=[self.attestor],
            ),
            opts=child,
        )
        self.register_outputs({"attestor": self.attestor})

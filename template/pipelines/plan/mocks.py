"""The stand-in for Pulumi's engine: mocks that fake the computed outputs the cloud would return, and a
monitor that records every registered resource with its inputs as the engine sees them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as runtime_mocks

from pipelines.plan.graph import PlanError, PlannedResource

# The engine's wire markers inside a property struct.
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # noqa: S105 (a wire marker)


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


SECRET = "[secret]"  # noqa: S105 (what a masked value prints as)


MOCK_ACCOUNT = "123456789012"


MOCK_PROJECT_NUMBER = "123456789012"
# What Cloud KMS returns for an asymmetric key version's public key (PEM; not a real key).
MOCK_PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nTU9DSy1QVUJMSUMtS0VZ\n-----END PUBLIC KEY-----\n"


def _clean(value: Any) -> Any:
    """Turn a decoded property struct into plain JSON, with secrets masked and unknowns marked."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270":
            return SECRET
        return {key: _clean(item) for key, item in value.items() if key != SECRET_SIG}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if value == UNKNOWN:
        return "[unknown]"
    return value


class RecordingMonitor(runtime_mocks.MockMonitor):
    """The mock monitor, plus a record of every registration exactly as it reached the 'engine'."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[PlannedResource] = []

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                PlannedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent or None,
                    custom=bool(request.custom),
                    inputs=_clean(json_format.MessageToDict(request.object)),
                    provider=request.provider or None,
                    dependencies=list(request.dependencies),
                )
            )
        return response


def _short_hash(*parts: str, length: int = 7) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


class PlanMocks(pulumi.runtime.Mocks):
    """What the clouds would answer: inputs echoed, plus plausible computed outputs (ids, ARNs, endpoints)."""

    def __init__(self, region: str) -> None:
        self.region = region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        token = args.typ
        suffix = _short_hash(token, args.name)
        physical = state.get("name") or f"{args.name}-{suffix}"
        package, _, rest = token.partition(":")
        if package == "aws":
            service = rest.split("/", 1)[0]
            state.setdefault("arn", f"arn:aws:{service}:{self.region}:{MOCK_ACCOUNT}:{physical}")
        computed = self._computed(token, state, physical, suffix)
        resource_id = computed.pop("id", f"{physical}-id")
        state.update(computed)
        return resource_id, state

    def _computed(self, token: str, state: dict[str, Any], physical: str, suffix: str) -> dict[str, Any]:
        region, project = self.region, state.get("project")
        lowered = physical.lower()
        key_id = f"{suffix}-0000-0000-0000-000000000000"
        pool, provider = state.get("workloadIdentityPoolId"), state.get("workloadIdentityPoolProviderId")
        pools = f"projects/{MOCK_PROJECT_NUMBER}/locations/global/workloadIdentityPools"
        email = f"{state.get('accountId')}@{project}.iam.gserviceaccount.com"
        computed: dict[str, dict[str, Any]] = {
            "aws:s3/bucket:Bucket": {"bucket": lowered, "arn": f"arn:aws:s3:::{lowered}"},
            "aws:iam/role:Role": {"arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/{physical}", "name": physical},
            "aws:iam/openIdConnectProvider:OpenIdConnectProvider": {
                "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{str(state.get('url', physical)).removeprefix('https://')}"
            },
            "aws:kms/key:Key": {"keyId": key_id, "arn": f"arn:aws:kms:{region}:{MOCK_ACCOUNT}:key/{key_id}"},
            "aws:eks/cluster:Cluster": {
                "endpoint": f"https://{suffix.upper()}.gr7.{region}.eks.amazonaws.com",
                "certificateAuthority": {"data": "TU9DSy1DQQ=="},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{suffix.upper()}"}]}],
            },
            "aws:eks/nodeGroup:NodeGroup": {"nodeGroupName": f"{state.get('nodeGroupNamePrefix', physical)}{suffix}"},
            "gcp:container/cluster:Cluster": {
                "endpoint": "172.16.0.2",
                "masterAuth": {"clusterCaCertificate": "TU9DSy1DQQ=="},
            },
            "gcp:serviceaccount/account:Account": {
                "email": email,
                "name": f"projects/{project}/serviceAccounts/{email}",
            },
            "gcp:iam/workloadIdentityPool:WorkloadIdentityPool": {"name": f"{pools}/{pool}"},
            "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider": {
                "name": f"{pools}/{pool}/providers/{provider}"
            },
            "gcp:storage/bucket:Bucket": {"name": lowered, "url": f"gs://{lowered}"},
            "gcp:kms/keyRing:KeyRing": {
                "id": f"projects/{project}/locations/{state.get('location')}/keyRings/{physical}"
            },
            "gcp:kms/cryptoKey:CryptoKey": {"id": f"{state.get('keyRing')}/cryptoKeys/{physical}"},
            "gcp:logging/projectBucketConfig:ProjectBucketConfig": {
                "id": f"projects/{project}/locations/{state.get('location')}/buckets/{state.get('bucketId')}"
            },
            "gcp:billing/budget:Budget": {"name": f"billingAccounts/{state.get('billingAccount')}/budgets/{suffix}"},
            "random:index/randomPassword:RandomPassword": {"result": f"mock-{suffix}"},
        }
        return dict(computed.get(token, {}))

    # The SDK accepts a plain dict (no check failures) although the base class declares a tuple.
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": MOCK_ACCOUNT,
                "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:user/plan",
                "userId": "PLAN",
            },
            "gcp:kms/getKMSCryptoKeyVersion:getKMSCryptoKeyVersion": {
                "name": f"{args.args.get('cryptoKey')}/cryptoKeyVersions/{args.args.get('version', 1)}",
                "algorithm": "EC_SIGN_P256_SHA256",
                "publicKeys": [{"algorithm": "EC_SIGN_P256_SHA256", "pem": MOCK_PUBLIC_KEY}],
                "state": "ENABLED",
            },
            "gcp:organizations/getProject:getProject": {
                "number": MOCK_PROJECT_NUMBER,
                "projectId": args.args.get("projectId"),
                "name": args.args.get("projectId"),
            },
        }
        if args.token not in answers:
            raise PlanError(
                f"the program calls {args.token}, which the offline plan cannot answer (add it to PlanMocks.call)"
            )
        return answers[args.token]

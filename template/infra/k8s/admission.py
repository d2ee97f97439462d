"""Signature verification at admission, as plain data: the sigstore policy-controller's chart values and
the `ClusterImagePolicy` objects that say which images may run in the app namespace.

- The app images (serving, tracking) run only when their digest carries a keyless cosign signature made
  by this repository's images workflow on `main` (`.github/workflows/images.yml`): the certificate's
  issuer is GitHub Actions' OIDC issuer and its subject is that workflow file at `refs/heads/main`.
  A branch, a fork or a laptop cannot make such a signature.
- The third-party images (postgres, MinIO) pass as the reviewed digests in `infra/k8s/objects.py` and no
  other: a changed digest there is a reviewed change, any other image of those repositories is refused.
- Anything else in the namespace matches no policy, and the controller refuses it (`no-match-policy: deny`).

Why policy-controller rather than Kyverno `verifyImages`: it does one thing (cosign verification) with one
small webhook and no policy language, its policies are cluster objects a test can check as data, and it
is the sigstore project's own verifier of cosign's signatures. Kyverno is a general policy engine whose
image verification (and its cosign bundle handling) has changed from release to release.

The chart pinned here ships policy-controller v0.13.1, which verifies cosign's tag-based signatures
(`sha256-<digest>.sig`), not the new bundle format cosign v3 writes by default: the images workflow signs
with `--new-bundle-format=false --use-signing-config=false` (sigstore/policy-controller#1899).
"""

from __future__ import annotations

import re
from typing import Any

from infra.k8s.objects import (
    MINIO_CLIENT_IMAGE,
    MINIO_IMAGE,
    POSTGRES_IMAGE,
    PROMETHEUS_STACK_CHART,
    PROMETHEUS_STACK_VERSION,
    Obj,
    app_labels,
    metadata,
)
from infra.k8s.rollout import ROLLOUTS_CHART, ROLLOUTS_VERSION

POLICY_CONTROLLER_CHART = "policy-controller"
POLICY_CONTROLLER_VERSION = "0.10.6"  # policy-controller v0.13.1; its CRD schema: infra/k8s/crds/policy-controller.json
POLICY_CONTROLLER_REPO = "https://sigstore.github.io/helm-charts"
POLICY_CONTROLLER_NAMESPACE = "cosign-system"
# The webhook's Kubernetes service account: the cloud identity that may read the stack's registries is bound to it.
VERIFIER_SERVICE_ACCOUNT = "policy-controller-webhook"
VERIFIER = "image-verifier"  # its key in AppContext.identity_annotations and the cloud identities
API_VERSION = "policy.sigstore.dev/v1beta1"
INCLUDE_LABEL = "policy.sigstore.dev/include"  # a namespace with it "true" is verified

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
FULCIO_URL = "https://fulcio.sigstore.dev"
REKOR_URL = "https://rekor.sigstore.dev"
SIGNING_WORKFLOW = ".github/workflows/images.yml"
SIGNING_REF = "refs/heads/main"
THIRD_PARTY_IMAGES = (POSTGRES_IMAGE, MINIO_IMAGE, MINIO_CLIENT_IMAGE)

DOCKER_HUB = "index.docker.io"

# The image repositories each pinned chart runs, with the values the stacks give it (`addons`), read from
# the chart's values.yaml at that version and its subcharts' (kube-state-metrics 6.1.0, grafana 9.3.0).
# Images of what those values leave off are not listed: node exporter, Thanos, the CRD upgrade job,
# Grafana's persistence (busybox), image renderer and dashboard downloads (curl), `helm test` pods, Argo
# Rollouts' dashboard. A GKE cluster admits exactly these outside the app namespace (Binary Authorization,
# infra/gcp/admission.py); a chart pinned at a version without a row here fails a test.
CHART_IMAGES: dict[tuple[str, str], tuple[str, ...]] = {
    (PROMETHEUS_STACK_CHART, PROMETHEUS_STACK_VERSION): (
        "quay.io/prometheus-operator/prometheus-operator",
        "quay.io/prometheus-operator/prometheus-config-reloader",
        "registry.k8s.io/ingress-nginx/kube-webhook-certgen",  # the admission webhook's certificate job
        "quay.io/prometheus/prometheus",
        "quay.io/prometheus/alertmanager",
        "registry.k8s.io/kube-state-metrics/kube-state-metrics",
        "docker.io/grafana/grafana",
        "quay.io/kiwigrid/k8s-sidecar",  # Grafana's dashboard sidecar
    ),
    (ROLLOUTS_CHART, ROLLOUTS_VERSION): ("quay.io/argoproj/argo-rollouts",),
    (POLICY_CONTROLLER_CHART, POLICY_CONTROLLER_VERSION): (
        "ghcr.io/sigstore/policy-controller/policy-controller",
        "cgr.dev/chainguard/kubectl",  # the chart's post-delete leases cleanup (a tag the chart does not pin)
    ),
}


def signer_subject(repository: str) -> str:
    """The certificate subject of a keyless signature made by the images workflow on main (`owner/name`)."""
    return f"https://github.com/{repository}/{SIGNING_WORKFLOW}@{SIGNING_REF}"


def _parts(image: str) -> tuple[str, str, str, str]:
    """(registry host, repository, tag, digest) as the controller reads a reference: no registry host is
    Docker Hub (`index.docker.io`, official images under `library/`)."""
    name, _, digest = image.partition("@")
    host, slash, path = name.partition("/")
    if not slash or not ("." in host or ":" in host or host == "localhost"):
        host, path = DOCKER_HUB, name
    elif host == "docker.io":
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    repository, _, tag = path.partition(":")
    return host, repository, tag, digest


def normalized(image: str) -> str:
    """An image reference as the controller matches it: a digest reference without its tag
    (`registry/repository@sha256:…`); a reference without tag or digest read as `:latest`."""
    host, repository, tag, digest = _parts(image)
    return f"{host}/{repository}@{digest}" if digest else f"{host}/{repository}:{tag or 'latest'}"


def repository_glob(image: str) -> str:
    """The glob of every digest of an image's repository: `registry/repository@sha256:*`."""
    host, repository, _, _ = _parts(image)
    return f"{host}/{repository}@sha256:*"


def glob_matches(glob: str, image: str) -> bool:
    """The controller's glob: `*` any run of characters but `/`, `**` any run at all, whole reference."""
    pattern = re.escape(glob).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    return re.fullmatch(pattern, normalized(image)) is not None


def controller_values(verifier_annotations: dict[str, Any]) -> dict[str, Any]:
    """Chart values: images no policy matches are refused, the webhook runs as the restricted Pod Security
    Standard asks, and its service account carries the cloud identity that reads the stack's registries."""
    restricted = {
        "enabled": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "installCRDs": True,
        "webhook": {
            "replicaCount": 2,
            "failurePolicy": "Fail",  # no verdict (webhook down) is no admission
            "configData": {"no-match-policy": "deny"},
            "podSecurityContext": restricted,  # the chart's name for the container's securityContext
            "securityContext": {"enabled": True, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "serviceAccount": {"create": True, "name": VERIFIER_SERVICE_ACCOUNT, "annotations": verifier_annotations},
            "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        },
        "leasescleanup": {"podSecurityContext": restricted},
    }


def image_policies(name: str, app_globs: list[Any], repository: str, tags: dict[str, str]) -> list[Obj]:
    """The two cluster-wide policies of a stack: its app images (`repository_glob` of each pinned image; a
    Pulumi output in a program) signed by its images workflow on main; the reviewed third-party digests."""
    labels = app_labels(tags, "admission")
    signed = {
        "apiVersion": API_VERSION,
        "kind": "ClusterImagePolicy",
        "metadata": metadata(f"{name}-app-images", None, labels),
        "spec": {
            "images": [{"glob": glob} for glob in app_globs],
            "authorities": [
                {
                    "name": "images-workflow",
                    "keyless": {
                        "url": FULCIO_URL,
                        "identities": [{"issuer": GITHUB_ISSUER, "subject": signer_subject(repository)}],
                    },
                    "ctlog": {"url": REKOR_URL},
                }
            ],
        },
    }
    reviewed = {
        "apiVersion": API_VERSION,
        "kind": "ClusterImagePolicy",
        "metadata": metadata(f"{name}-third-party", None, labels),
        "spec": {
            "images": [{"glob": normalized(image)} for image in THIRD_PARTY_IMAGES],
            "authorities": [{"name": "reviewed-digest", "static": {"action": "pass"}}],
        },
    }
    return [signed, reviewed]

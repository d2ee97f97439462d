"""Kubeconfigs for the clusters a stack creates: the caller authenticates with their own cloud identity."""

from __future__ import annotations

from typing import Any


def kubeconfig(name: str, endpoint: str, ca_data: str, user: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "users": [{"name": name, "user": user}],
    }


def eks_kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> dict[str, Any]:
    """Authenticates with `aws eks get-token`."""
    token = ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"]
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws", "args": token}}
    return kubeconfig(cluster_name, endpoint, ca_data, user)


def gke_kubeconfig(cluster_name: str, endpoint: str, ca_data: str) -> dict[str, Any]:
    """Authenticates with `gke-gcloud-auth-plugin`; GKE reports the endpoint without a scheme."""
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
        }
    }
    return kubeconfig(cluster_name, f"https://{endpoint}", ca_data, user)

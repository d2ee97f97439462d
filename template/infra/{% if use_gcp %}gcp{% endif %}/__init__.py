"""The GCP part of the program: network and storage, GKE and node pools, identity, registry, budget and
monitoring, wired in `stack.py`.

Imports: `infra.settings`, `infra.naming`, `infra.k8s`.
"""

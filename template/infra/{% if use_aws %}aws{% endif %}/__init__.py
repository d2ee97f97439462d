"""The AWS part of the program: network, storage, EKS and node groups, identity, registry, budget and
monitoring, wired in `stack.py`.

Imports: `infra.settings`, `infra.naming`, `infra.k8s`.
"""

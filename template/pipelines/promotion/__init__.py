"""Promotion between registries: the policy verdict on a version, the verified copy with lineage into
the next environment's registry, the alias. Used by the local lifecycle and by releases.

Imports: `pipelines.common`, `core`, `policies.models`.
"""

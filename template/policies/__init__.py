"""Policy-as-code: CrossGuard packs for infrastructure, promotion policies for models.

Imports: `infra` (settings, pricing), `core`. Never `pipelines`: the pack runs in its own process.
"""

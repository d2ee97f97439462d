"""Policy-as-code: CrossGuard packs for infrastructure, promotion policies for models."""

"""Container images with podman: build contexts, builds on the public or on locally made bases, and an
image run the way its planned pod runs it (used by `images` and by `local up --containers`).

Imports: `pipelines.common`, `infra`, `core`.
"""

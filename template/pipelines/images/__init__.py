"""`mlops images status|targets|pin`: the apps' container images per environment, where builds are
pushed, and pinning a build by pull request.

Imports: `pipelines.common`, `pipelines.config`, `pipelines.containers`, `pipelines.release` (its
pull-request helper).
"""

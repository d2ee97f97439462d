"""Model releases by pull request: `mlops promote` (open the PR), `gate` (the decision on it), `sync`
(a registry follows git), `rollback` and `report`.

Imports: `pipelines.common`, `pipelines.config`, `pipelines.plan`, `pipelines.promotion`,
`pipelines.local` (the local environment stands in for the cloud registries).
"""

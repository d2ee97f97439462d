"""`mlops data`: versioned datasets in an environment's store (add, list, show, diff, pull).

Imports: `core.datasets`, `pipelines.common`, `pipelines.local` (the local environment's store),
`apps.serving.drift` (the shift between two versions is the drift test serving uses).
"""

"""`mlops train`: train the reference model into a registry (the local environment's by default).

Imports: `pipelines.common`, `pipelines.local`.
"""

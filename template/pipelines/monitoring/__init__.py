"""`mlops drift`: has what an environment serves drifted from its training data? Served inputs
against the training reference; record the result, retrain a dev candidate.

Imports: `pipelines.common`, `pipelines.local`, `pipelines.release`, `apps.serving`.
"""

"""`mlops local up|status|down|promote`: the whole model lifecycle on 127.0.0.1 (object store, MLflow,
training, gated promotion, BentoML serving, smoke test), with the code the cloud runs.

Imports: `pipelines.common`, `pipelines.containers`, `pipelines.promotion`, `apps`, `core`, `infra`.
"""

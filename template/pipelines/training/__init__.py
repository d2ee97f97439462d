"""`mlops train`: train the reference model into a registry (the local environment's by default), or on an
environment's cluster (`--on-cluster`: a Job from the deployed training CronJob).

Imports: `pipelines.common`, `pipelines.data`, `pipelines.release` (the kubeconfigs, the registries), `pipelines.local`.
"""

"""Plan, policy and cost: `mlops plan` (the Pulumi program under Pulumi's mocks), `mlops policy check`
(the CrossGuard pack on that graph), `mlops cost` (the estimate, `--compare REF`).

Imports: `pipelines.common`, `pipelines.config`, `infra`, `policies`.
"""

"""The monthly cost of a stack: price table, assumptions, pricing rules per resource family, estimate.

Pure arithmetic over planned resources (the plan's graph, or what the engine hands the policy pack),
so that `mlops cost` and the pack's budget rule compute the same figure. Imports: `infra.settings`,
`infra.naming`.
"""

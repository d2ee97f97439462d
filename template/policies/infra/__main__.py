"""The CrossGuard pack. The engine runs it for
`pulumi preview --policy-pack policies/infra --policy-pack-config policies/infra/config/<env>.json`.

Only builds the pack (the constructor serves the engine over gRPC and never returns); the rules
live in importable modules that the offline evaluator and the tests use directly.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.infra.pack import PACK_NAME, RULES, to_policy

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=[to_policy(rule) for rule in RULES])

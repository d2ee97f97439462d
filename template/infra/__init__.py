"""The Pulumi program: typed settings, one ComponentResource per concern, wired in `__main__.py`,
and the cost arithmetic over its planned resources (`pricing/`).

Imports: `core` only, of this repository. Never `pipelines` or `policies`.
"""

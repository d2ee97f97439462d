"""Pulumi entry point (`main: infra/` in Pulumi.yaml): read the stack's settings, wire components.

Nothing else happens at import time anywhere in `infra/`; this module is the only one that runs.
"""

import pulumi

from infra.config import load_from_pulumi

settings = load_from_pulumi()

pulumi.export("environment", settings.environment.value)
pulumi.export("clouds", [cloud.value for cloud in settings.clouds])
pulumi.export("served_model", settings.serving.model.model_dump(mode="json"))

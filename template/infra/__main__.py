"""Pulumi entry point (`main: infra/` in Pulumi.yaml): read the stack's settings, wire the components.

Nothing else happens at import time anywhere in `infra/`; this module is the only one that runs.
Each cloud's wiring is imported only when the stack uses that cloud, so a single-cloud project
never needs the other cloud's SDK.
"""

import pulumi

from infra.config import load_from_pulumi
from infra.settings import Cloud

settings = load_from_pulumi()
project = pulumi.get_project()

pulumi.export("environment", settings.environment.value)
pulumi.export("clouds", [cloud.value for cloud in settings.clouds])
pulumi.export("served_model", settings.serving.model.model_dump(mode="json"))

if Cloud.AWS in settings.clouds:
    from infra.aws.stack import build as build_aws

    pulumi.export("aws", build_aws(settings, project))
if Cloud.GCP in settings.clouds:
    from infra.gcp.stack import build as build_gcp

    pulumi.export("gcp", build_gcp(settings, project))
if not settings.clouds:
    from infra.local import build as build_local

    pulumi.export("local", build_local(settings, project))

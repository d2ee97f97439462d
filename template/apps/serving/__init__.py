"""Model serving: a BentoML service that loads the environment's model version from its registry."""

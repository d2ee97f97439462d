"""The infrastructure CrossGuard pack: rules in `rules/`, adapters in `pack.py`, per-environment config in `config/`."""

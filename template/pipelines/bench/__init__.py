"""Benchmarks of the platform\x27s own commands (run by hand; figures go in release notes, not in tests)."""

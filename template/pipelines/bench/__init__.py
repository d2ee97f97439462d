"""Benchmarks of the platform's own commands and of serving (run by hand; figures go in release notes,
not in tests), and the bounded loopback load generator they use.

Imports: any flow (nothing imports the benchmarks).
"""

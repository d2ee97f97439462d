"""Shared plumbing of the flows: output formats, command options, local processes, git.

Imports: `core`, `infra.config`. Every flow may import it; it imports no flow.
"""

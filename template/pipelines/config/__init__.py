"""`mlops config validate|show`: the stack files (the desired state of every environment), and the
helpers that check an edited stack file.

Imports: `pipelines.common`.
"""

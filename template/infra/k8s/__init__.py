"""The apps' Kubernetes objects as plain data (`apps`, `tracking`, `serving`, `platform`, `dashboard`)
and the components that apply them to a cluster (`components`).

Imports: `infra.settings`, `infra.naming`.
"""

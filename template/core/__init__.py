"""The layer every other package may import: errors for people (with the CLI's exit codes) and the
MLflow model-registry operations that training, serving and promotion share.

Imports: nothing of this repository (apps, infra, policies and pipelines all build on it).
"""

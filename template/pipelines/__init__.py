"""Lifecycle commands of the platform and the `mlops` CLI that CI and people both run."""

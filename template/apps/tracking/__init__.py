"""The MLflow tracking server + registry: how it is started, locally and (later) in its container image."""

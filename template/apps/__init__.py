"""The platform's applications: training job, tracking server configuration, model serving."""

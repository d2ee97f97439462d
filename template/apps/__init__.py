"""The platform's applications: training job, tracking server configuration, model serving.

Imports: `core` (the registry operations). Never `pipelines` or `policies`: the images run the apps alone.
"""

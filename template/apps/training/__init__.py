"""The reference training job: a scikit-learn pipeline, evaluated, logged and registered in MLflow."""

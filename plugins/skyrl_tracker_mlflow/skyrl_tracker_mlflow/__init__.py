"""MLflow tracker for skyrl: ``[tracking] trackers = ["mlflow"]``."""

__version__ = "0.1.0"

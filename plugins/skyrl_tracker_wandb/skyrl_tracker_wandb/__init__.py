"""Weights & Biases tracker for skyrl: ``[tracking] trackers = ["wandb"]``."""

__version__ = "0.1.0"

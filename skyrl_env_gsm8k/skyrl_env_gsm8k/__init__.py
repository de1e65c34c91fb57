"""The GSM8K math environment and dataset preparer for skyrl."""

__version__ = "0.1.0"

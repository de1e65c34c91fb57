"""SGLang inference backend for skyrl."""

__version__ = "0.1.0"

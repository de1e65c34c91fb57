"""DAPO (clip-higher, dynamic sampling, token-level loss, overlong shaping) for skyrl."""

__version__ = "0.1.0"

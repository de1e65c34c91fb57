"""Inference backends that ship with skyrl-core.

* ``native``: torch + transformers (``skyrl_core.backends.native.NativeBackend``).

Sub-modules: ``native_config`` (its options, torch-free), ``sampling`` (per-row
filters and draws), ``stops`` (exact stop strings). This package imports nothing heavy.
"""

"""Inference backends that ship with skyrl-core.

* ``native``: torch + transformers (``skyrl_core.backends.native.NativeBackend``).

Sub-modules: ``native_config`` (its options, torch-free); its two decode engines,
``hf_engine`` and ``static``, and what they share: ``rows`` (the samples an engine decodes
and what each produced), ``sampling`` (per-row filters, seeds and draws), ``stops`` (where
a sample ends: stop ids, exact stop strings, length); ``validation`` (request checks every
backend uses). This package imports nothing heavy.
"""

"""Shared fixtures of the SGLang plugin's tests.

Tests that need a real SGLang engine import ``sglang`` through ``needs_sglang`` and are
skipped (with the reason) where it is not installed, e.g. in the main venv of
``scripts/test.sh``; ``scripts/ci.sh`` of this package builds the SGLang CPU venv and runs
them for real.
"""

from __future__ import annotations

import importlib.util

import pytest

HAVE_SGLANG = importlib.util.find_spec("sglang") is not None

needs_sglang = pytest.mark.skipif(
    not HAVE_SGLANG,
    reason="sglang is not installed here; plugins/skyrl_backend_sglang/scripts/ci.sh runs these in its own venv",
)

"""Helpers for the training-loop tests, under the names they use: a tiny, fast run config
written into a temp dir, and metrics.jsonl read back by step (both from ``skyrl_core.testing.runs``)."""

from __future__ import annotations

from skyrl_core.testing.runs import read_metrics as metrics  # noqa: F401
from skyrl_core.testing.runs import write_tiny_config as write_config  # noqa: F401


"""Builtin inference backend (native) and training strategy (local)."""

from __future__ import annotations

from skyrl_core.specs import ComponentSpec

BACKENDS: list[ComponentSpec] = []
STRATEGIES: list[ComponentSpec] = []

"""Builtin metric trackers."""

from __future__ import annotations

from skyrl_core.specs import ComponentSpec

TRACKERS: list[ComponentSpec] = []

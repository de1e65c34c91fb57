"""Builtin environments and dataset preparers (the quickstart's arithmetic task)."""

from __future__ import annotations

from skyrl_core.specs import ComponentSpec

ENVIRONMENTS: list[ComponentSpec] = []
DATASET_PREPARERS: list[ComponentSpec] = []

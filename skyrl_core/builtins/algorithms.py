"""Builtin advantage estimators and policy losses (implemented in skyrl_core.algorithms)."""

from __future__ import annotations

from skyrl_core.specs import ComponentSpec

ADVANTAGE_ESTIMATORS: list[ComponentSpec] = []
POLICY_LOSSES: list[ComponentSpec] = []

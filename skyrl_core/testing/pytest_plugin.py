"""pytest fixtures shipped with skyrl-core (auto-loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import pytest

from skyrl_core.testing.helpers import fresh_registry


@pytest.fixture
def skyrl_registry():
    """A fresh registry with the builtins and every installed plugin."""
    return fresh_registry(entry_points=True)

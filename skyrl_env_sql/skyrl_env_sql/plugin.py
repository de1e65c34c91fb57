"""skyrl plugin module of skyrl-env-sql: its hook implementations.

Registered through the `skyrl` entry point in pyproject.toml. The components arrive with
their issue; until then this plugin loads and provides nothing.
"""

from __future__ import annotations

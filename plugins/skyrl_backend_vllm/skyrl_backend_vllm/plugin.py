"""skyrl plugin module of skyrl-backend-vllm: its hook implementations.

Registered through the `skyrl` entry point in pyproject.toml. The backend arrives with
its issue; until then this plugin loads and provides nothing.
"""

from __future__ import annotations

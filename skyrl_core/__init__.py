"""skyrl: reinforcement-learning post-training for language models, built from plugins.

The public surface is ``skyrl_core.api``; every name of it is also available here::

    from skyrl_core import ComponentSpec, hookimpl

    @hookimpl
    def skyrl_register_environments():
        return [ComponentSpec("my_env", "my_pkg.env:MyEnv", "My task.", MyEnvConfig)]

Nothing is imported until it is used, so importing ``skyrl_core`` (or any of its modules)
stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Not `from skyrl_core import api`: that would look the submodule up through this very function.
    api = importlib.import_module("skyrl_core.api")
    if name in api.EXPORTS:
        return getattr(api, name)
    raise AttributeError(f"module 'skyrl_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    api = importlib.import_module("skyrl_core.api")
    return sorted([*globals(), *api.EXPORTS])

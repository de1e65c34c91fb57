"""skyrl: reinforcement-learning post-training for language models, built from plugins.

Plugin authors need ``hookimpl`` and ``ComponentSpec``::

    from skyrl_core import ComponentSpec, hookimpl

    @hookimpl
    def skyrl_register_environments():
        return [ComponentSpec("my_env", "my_pkg.env:MyEnv", "My task.", MyEnvConfig)]
"""

from skyrl_core.plugins import build_registry, hookimpl
from skyrl_core.specs import ComponentSpec, Kind

__version__ = "0.1.0"
__all__ = ["ComponentSpec", "Kind", "__version__", "build_registry", "hookimpl"]

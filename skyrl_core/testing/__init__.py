"""Testing helpers for skyrl and for plugin authors.

* ``fresh_registry(*plugins)``: a registry with the builtins plus the given plugin modules.
* ``check_plugin(module)``: validate a plugin's hooks and specs; returns a list of problems.
* ``skyrl_core.testing.conformance``: the test suite every inference backend runs.
* ``skyrl_core.testing.pytest_plugin``: fixtures, loaded automatically by pytest.
"""

from skyrl_core.testing.helpers import check_plugin, fresh_registry

__all__ = ["check_plugin", "fresh_registry"]

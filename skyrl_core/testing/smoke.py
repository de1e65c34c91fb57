"""The smoke test every plugin distribution runs: it loads through its entry point, alone.

::

    from skyrl_core.testing.smoke import PluginSmoke

    SMOKE = PluginSmoke("skyrl-env-gsm8k", Path(__file__).resolve().parents[1])

    def test_it_loads_alone():
        SMOKE.assert_loads({"environment": ["gsm8k", "gsm8k_multi_turn"], "dataset_preparer": [...]})

    def test_readme_snippets_validate():
        for cfg in SMOKE.readme_runs():
            ...

Each check runs with ``SKYRL_LOAD_PLUGINS`` set to the distribution alone, so other installed
plugins can neither hide a problem nor cause one. ``assert_loads`` runs the real ``skyrl
plugins --json`` command (entry point, import, hooks), compares the version with the project's
``pyproject.toml`` and checks every component against its contract (``skyrl doctor``'s check).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import tomllib


@attrs.frozen
class PluginSmoke:
    """Smoke checks of one plugin distribution.

    Attributes:
        dist: the distribution name, e.g. ``"skyrl-env-gsm8k"`` (its entry point's name too).
        project_dir: the folder holding its ``pyproject.toml`` and ``README.md``.
    """

    dist: str
    project_dir: Path

    @property
    def readme(self) -> Path:
        return Path(self.project_dir) / "README.md"

    def _missing(self) -> str:
        return f"{self.dist} is not installed in this environment: pip install {self.project_dir}"

    def plugins_json(self) -> dict[str, dict[str, Any]]:
        """``skyrl plugins --json`` (the real command, in a subprocess) by distribution."""
        script = Path(sys.executable).parent / "skyrl"
        env = dict(os.environ, SKYRL_LOAD_PLUGINS=self.dist)
        proc = subprocess.run([str(script), "plugins", "--json"], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"skyrl plugins failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return {entry["distribution"]: entry for entry in json.loads(proc.stdout)}

    def registry(self) -> Any:
        """A registry of the builtins and this plugin alone."""
        from skyrl_core.plugins import build_registry

        registry = build_registry(only=[self.dist])
        assert any(p.distribution == self.dist for p in registry.plugins), self._missing()
        return registry

    def assert_loads(self, components: dict[str, list[str]]) -> None:
        """Loads with status ``ok`` and the project's version, provides exactly ``components``
        (``{kind: [names]}``), and every one of them imports and keeps its contract."""
        from skyrl_core.contracts import problems_of

        entries = self.plugins_json()
        assert self.dist in entries, self._missing()
        entry = entries[self.dist]
        assert entry["status"] == "ok", entry["error"]
        version = tomllib.loads((Path(self.project_dir) / "pyproject.toml").read_text())["project"]["version"]
        assert entry["version"] == version, f"installed {entry['version']}, the checkout says {version}: reinstall"
        assert entry["components"] == components, entry["components"]
        registry = self.registry()
        problems = [
            line
            for kind in registry.components
            for component in registry.components[kind].values()
            if component.provider.distribution == self.dist
            for line in problems_of(component)
        ]
        assert not problems, "\n".join(problems)

    def readme_snippets(self) -> list[str]:
        """Every ```` ```toml ```` block of the README."""
        return re.findall(r"^```toml\n(.*?)^```", self.readme.read_text(), flags=re.S | re.M)

    def readme_runs(self) -> list[Any]:
        """The README's whole run configs (snippets with ``[model]``), each validated with this
        plugin loaded: the ``RunConfig`` of each."""
        from skyrl_core.config.loader import parse_config

        registry = self.registry()
        runs = [s for s in self.readme_snippets() if "[model]" in s]
        return [
            parse_config(tomllib.loads(s), registry=registry, source=f"{self.readme.name} snippet {i}")
            for i, s in enumerate(runs)
        ]

"""Which plugin an exception came from, so a failure in a plugin's own code names the plugin.

``blame(exc, registry)`` walks the traceback from the innermost frame outwards and stops at
the first frame in code that a known distribution owns: a plugin package (by the top-level
package of its entry-point module and of its components' implementations) or skyrl-core
itself. Frames of libraries the plugin called (torch, sqlite3, ...) are skipped, so an error
a plugin provoked in a library is still the plugin's. skyrl-core's own frames mean a bug of
ours: nothing is blamed and the CLI shows the traceback.

``report_plugin_exception`` prints one line naming the distribution and component, the place
in the plugin's code, and a file holding the full traceback.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from skyrl_core.plugins import Component, PluginInfo, Registry

CORE_PACKAGE = "skyrl_core"


@attrs.frozen
class Blame:
    """The plugin code an exception was raised in."""

    plugin: PluginInfo
    components: tuple[Component, ...]
    filename: str
    lineno: int
    function: str

    def describe(self) -> str:
        """``"the environment 't_env' of skyrl-test-pkg 0.1.0"`` (or the distribution alone)."""
        if len(self.components) == 1:
            c = self.components[0]
            return f"the {c.kind.label} {c.name!r} of {self.plugin.describe()}"
        return f"the plugin {self.plugin.describe()}"


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _module_of(component: Component) -> str | None:
    impl = component.spec.impl
    if isinstance(impl, str):
        return impl.partition(":")[0]
    return getattr(impl, "__module__", None)


def _owners(registry: Registry) -> dict[str, PluginInfo]:
    """Top-level package -> the plugin that owns it (skyrl-core's builtins own ``skyrl_core``)."""
    owners: dict[str, PluginInfo] = {}
    for info in registry.plugins:
        if info.status != "ok":
            continue
        owners.setdefault(_top(info.module), info)
    for kind_components in registry.components.values():
        for c in kind_components.values():
            module = _module_of(c)
            if module:
                owners.setdefault(_top(module), c.provider)
    return owners


def blame(exc: BaseException, registry: Registry) -> Blame | None:
    """The plugin whose code raised ``exc`` (None when it was skyrl-core's or nobody's)."""
    owners = _owners(registry)
    tb: TracebackType | None = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    for tb in reversed(frames):
        module = tb.tb_frame.f_globals.get("__name__", "")
        owner = owners.get(_top(module))
        if owner is None:
            continue  # a library the code called
        if _top(module) == CORE_PACKAGE or owner.name == "skyrl-core":
            return None
        comps = tuple(
            c
            for kind_components in registry.components.values()
            for c in kind_components.values()
            if c.provider is owner and _module_of(c) == module
        )
        code = tb.tb_frame.f_code
        return Blame(owner, comps, code.co_filename, tb.tb_lineno, code.co_name)
    return None


def report_plugin_exception(exc: BaseException, registry: Registry, file: Any = None) -> bool:
    """Print one line naming the plugin ``exc`` came from; False (nothing printed) if none did."""
    found = blame(exc, registry)
    if found is None:
        return False
    fd, path = tempfile.mkstemp(prefix="skyrl-traceback-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(exc)))
    print(
        f"error: {found.describe()} raised {type(exc).__name__}: {exc} "
        f"(at {found.filename}:{found.lineno}, in {found.function}). This is a bug in that plugin, not in your "
        f"config: report it to its authors. Full traceback: {path}",
        file=file or sys.stderr,
    )
    return True

"""Which plugin an exception came from, so a failure in a plugin's own code names the plugin.

``blame(exc, registry)`` walks the traceback from the innermost frame outwards and stops at
the first frame in code that a known distribution owns: a plugin package (by the top-level
package of its entry-point module and of its components' implementations) or skyrl-core
itself. Frames of libraries the plugin called (torch, sqlite3, ...) are skipped, so an error
a plugin provoked in a library is still the plugin's. skyrl-core's own frames mean a bug of
ours: nothing is blamed and the CLI shows the traceback.

``report_plugin_exception`` prints one line naming the distribution and component (or hook),
the place in the plugin's code, and a file holding the full traceback. A ``ValueError`` or
``TypeError`` raised while a plugin's hook ran is the plugin rejecting its input (the run's
config, its data), not a crash: it is reported as such, with exit code 2 like every other bad
input; ``input_error`` does the same for the dataset preparers, which the core calls itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from types import CodeType, TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from skyrl_core import hookspecs
from skyrl_core.errors import PluginError

if TYPE_CHECKING:
    from skyrl_core.plugins import Component, PluginInfo, Registry

CORE_PACKAGE = "skyrl_core"
#: Exceptions that mean "this input is wrong" when a plugin's hook or preparer raises them.
INPUT_ERRORS = (ValueError, TypeError)


@attrs.frozen
class Blame:
    """The plugin code an exception was raised in."""

    plugin: PluginInfo
    components: tuple[Component, ...]
    filename: str
    lineno: int
    function: str
    hook: str | None = None  # the plugin's hook implementation that was running, if any

    def describe(self) -> str:
        """``"the environment 't_env' of skyrl-test-pkg 0.1.0"``, ``"the hook skyrl_step_end of
        skyrl-test-pkg 0.1.0"`` (or the distribution alone)."""
        if self.hook is not None:
            return f"the hook {self.hook} of {self.plugin.describe()}"
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


def _hook_codes(registry: Registry) -> dict[CodeType, str]:
    """The code object of every hook implementation -> the hook's name."""
    out: dict[CodeType, str] = {}
    for name in (n for n in dir(hookspecs) if n.startswith("skyrl_")):
        caller = getattr(registry.hook, name, None)
        for impl in caller.get_hookimpls() if caller is not None else ():
            code = getattr(impl.function, "__code__", None)
            if code is not None:
                out[code] = name
    return out


def blame(exc: BaseException, registry: Registry) -> Blame | None:
    """The plugin whose code raised ``exc`` (None when it was skyrl-core's or nobody's)."""
    owners = _owners(registry)
    tb: TracebackType | None = exc.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    hooks = _hook_codes(registry)
    running = [(tb, hooks[tb.tb_frame.f_code]) for tb in frames if tb.tb_frame.f_code in hooks]
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
        hook = next((name for t, name in running if _top(t.tb_frame.f_globals.get("__name__", "")) == _top(module)),
                    None)
        code = tb.tb_frame.f_code
        return Blame(owner, comps, code.co_filename, tb.tb_lineno, code.co_name, hook)
    return None


def _save_traceback(exc: BaseException) -> str:
    fd, path = tempfile.mkstemp(prefix="skyrl-traceback-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(exc)))
    return path


def _rejected(who: str, exc: BaseException, found: Blame | None) -> str:
    where = f" (at {found.filename}:{found.lineno}, in {found.function})" if found is not None else ""
    return (
        f"{who} rejected its input: {type(exc).__name__}: {exc}{where}. Check the options it reads in your config "
        f"(and its data); if they are right, report it to the plugin's authors. Full traceback: {_save_traceback(exc)}"
    )


def input_error(exc: BaseException, registry: Registry, who: str) -> PluginError:
    """A ``PluginError`` (exit code 2) for ``exc``, raised by ``who`` (e.g. "the dataset preparer
    'gsm8k' of skyrl-env-gsm8k 0.1.0") while it read its input."""
    return PluginError(_rejected(who, exc, blame(exc, registry)))


def report_plugin_exception(exc: BaseException, registry: Registry, file: Any = None) -> int | None:
    """Print one line naming the plugin ``exc`` came from and return the exit code: 2 when one of
    its hooks rejected its input (``INPUT_ERRORS``), 1 for a bug; None (nothing printed) when no
    plugin's code raised it."""
    found = blame(exc, registry)
    if found is None:
        return None
    if found.hook is not None and isinstance(exc, INPUT_ERRORS):
        print(f"error: {_rejected(found.describe(), exc, found)}", file=file or sys.stderr)
        return 2
    print(
        f"error: {found.describe()} raised {type(exc).__name__}: {exc} "
        f"(at {found.filename}:{found.lineno}, in {found.function}). This is a bug in that plugin, not in your "
        f"config: report it to its authors. Full traceback: {_save_traceback(exc)}",
        file=file or sys.stderr,
    )
    return 1

"""User-facing errors: each says what is wrong, where, and what to do next.

The CLI prints ``str(error)`` for any ``SkyrlError`` and exits with its ``exit_code``
instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

import attrs


class SkyrlError(Exception):
    """Base class of errors caused by user input (config, data, plugins)."""

    exit_code = 2


@attrs.frozen
class ConfigIssue:
    """One problem in a config file: the dotted key path, what is wrong there and, when the
    file writes that key, its line."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} (line {self.line})" if self.line else text


class ConfigError(SkyrlError):
    """Every problem found in one config file, reported together: one line each, the first
    ``MAX_SHOWN`` of them, then how many more there are."""

    MAX_SHOWN = 20

    def __init__(self, issues: Sequence[ConfigIssue], source: str = "<config>") -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        n = len(self.issues)
        head = f"{self.source}: {n} error{'s' if n != 1 else ''} in the configuration"
        lines = [f"  - {' '.join(str(issue).splitlines())}" for issue in self.issues[: self.MAX_SHOWN]]
        if n > self.MAX_SHOWN:
            lines.append(f"  ... and {n - self.MAX_SHOWN} more (the first {self.MAX_SHOWN} are shown; fix those first)")
        return "\n".join([head, *lines])


class PluginError(SkyrlError):
    """A plugin is broken or two plugins conflict."""


class DataError(SkyrlError):
    """A dataset file or row is unusable."""


class MissingDependencyError(SkyrlError, ImportError):
    """A selected component needs a package that is not installed; the message says how to install it."""


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest candidate, or ''."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" Did you mean {matches[0]!r}?" if matches else ""

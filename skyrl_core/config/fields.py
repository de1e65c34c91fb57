"""``option()``: an attrs field with help text and an optional value check.

Every config field, in core and in plugins, is declared with ``option`` so that
``docs/config.md`` and ``skyrl components`` can show its help, and so that value checks
are reported together with every other error of the file (attrs validators would stop at
the first one)::

    @attrs.define(kw_only=True)
    class MyEnvConfig:
        timeout_s: float = option(10.0, help="Seconds before a step is abandoned.", check=positive)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

Check = Callable[[Any], "str | None"]


def option(
    default: Any = attrs.NOTHING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    check: Check | None = None,
) -> Any:
    """Declare a config field with help text; ``check(value)`` returns an error or None."""
    metadata = {"help": help}
    if check is not None:
        metadata["check"] = check
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def help_of(field: attrs.Attribute) -> str:
    """The help text of a field ('' when missing)."""
    return str(field.metadata.get("help", ""))


# -- reusable checks ------------------------------------------------------------------------


def positive(value: Any) -> str | None:
    """Require a number > 0."""
    return None if value is None or value > 0 else f"must be > 0, got {value!r}"


def non_negative(value: Any) -> str | None:
    """Require a number >= 0."""
    return None if value is None or value >= 0 else f"must be >= 0, got {value!r}"


def unit_interval(value: Any) -> str | None:
    """Require 0 <= value <= 1."""
    return None if value is None or 0 <= value <= 1 else f"must be between 0 and 1, got {value!r}"


def at_least(bound: float) -> Check:
    """Require value >= bound."""

    def check(value: Any) -> str | None:
        return None if value is None or value >= bound else f"must be >= {bound}, got {value!r}"

    return check


def all_positive(values: Any) -> str | None:
    """Require every element of a list to be > 0."""
    bad = [v for v in values or () if not v > 0]
    return f"every entry must be > 0, got {bad!r}" if bad else None

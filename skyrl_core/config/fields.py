"""``option()``: an attrs field with help text, a declared range and an optional value check.

Every config field, in core and in plugins, is declared with ``option`` so that
``docs/config.md`` and ``skyrl components`` can show its help and range, and so that value
checks are reported together with every other error of the file (attrs validators would stop
at the first one)::

    @attrs.define(kw_only=True)
    class MyEnvConfig:
        timeout_s: float = option(10.0, help="Seconds before a step is abandoned.", check=positive)
        seed: int = option(0, help="Seed of the generator.", check=seed_range)
        system_prompt: str = option("", help="System message ('' for none).", allow_empty=True)

Besides its own ``check``, every value is held to what no consumer accepts (``value_problems``):
a float must be finite (NaN never; infinity only with ``allow_inf=True``), and a string, or a
string in a list, must not be empty (unless ``allow_empty=True``), so that
``path = ""`` is an error instead of the current folder. Integers are bounded to 64 bits
when they are read (``skyrl_core.config.loader``).
"""

from __future__ import annotations

import math
import re
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
    allow_empty: bool = False,
    allow_inf: bool = False,
) -> Any:
    """Declare a config field with help text.

    Args:
        default: the default value (omit it, and ``factory``, for a required key).
        help: one or two sentences for the reference and ``skyrl components``.
        factory: builds a mutable default (lists, tables).
        check: ``check(value)`` returns an error (``"must be > 0, got -1"``) or None; a ``Range``
            such as ``positive`` also shows in the configuration reference.
        allow_empty: the empty string is meaningful here (e.g. "no system prompt").
        allow_inf: infinity is meaningful here (e.g. "no limit"); NaN never is.
    """
    metadata: dict[str, Any] = {"help": help}
    if check is not None:
        metadata["check"] = check
    if allow_empty:
        metadata["allow_empty"] = True
    if allow_inf:
        metadata["allow_inf"] = True
    if factory is not None:
        return attrs.field(factory=factory, metadata=metadata)
    return attrs.field(default=default, metadata=metadata)


def help_of(field: attrs.Attribute) -> str:
    """The help text of a field ('' when missing)."""
    return str(field.metadata.get("help", ""))


def value_problems(field: attrs.Attribute, value: Any) -> list[tuple[tuple[int, ...], str]]:
    """What is wrong with ``value`` for ``field``: ``(index path inside the value, message)`` pairs.

    Applies the rules every value obeys (finite floats, non-empty strings, also inside lists),
    then the field's own ``check``. The check runs only on a value that passed the rules, so it
    never sees NaN or an empty string. A check that raises is not caught here (the loader
    reports it as the fault of the config class's owner).
    """
    found = _rule_problems(field, value, ())
    check = field.metadata.get("check")
    if not found and check is not None and value is not None:
        message = check(value)
        if message:
            found.append(((), message))
    return found


def _rule_problems(field: attrs.Attribute, value: Any, where: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
    if isinstance(value, float):
        if math.isnan(value):
            return [(where, "must be a number, got nan")]
        if math.isinf(value) and not field.metadata.get("allow_inf"):
            return [(where, f"must be finite, got {value!r}")]
    elif isinstance(value, str):
        if not value and not field.metadata.get("allow_empty"):
            return [(where, "must not be empty, got an empty string")]
    elif isinstance(value, (list, tuple)):
        out: list[tuple[tuple[int, ...], str]] = []
        for i, item in enumerate(value):
            out += _rule_problems(field, item, (*where, i))
        return out
    return []


# -- declared ranges -------------------------------------------------------------------------


@attrs.frozen(repr=False)
class Range:
    """A check that a number lies in a range, declared so that the reference can show it.

    ``Range(gt=0)`` is ``positive``; ``Range(ge=0, le=1)`` is ``unit_interval``. None is
    accepted (an unset optional value).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def __repr__(self) -> str:
        bounds = ", ".join(f"{k}={v!r}" for k, v in attrs.asdict(self).items() if v is not None)
        return f"Range({bounds})"

    def __call__(self, value: Any) -> str | None:
        """The error for ``value`` (``"must be > 0, got -1"``), or None when it is in range."""
        if value is None or self.contains(value):
            return None
        return f"must be {self.describe(prose=True)}, got {value!r}"

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the range."""
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def describe(self, prose: bool = False) -> str:
        """``"> 0"``, ``">= 0"``, ``"between 0 and 1"`` (``prose``) or ``"0 to 1"``, ``"in (0, 1]"``."""
        low = (">", self.gt) if self.gt is not None else (">=", self.ge) if self.ge is not None else None
        high = ("<", self.lt) if self.lt is not None else ("<=", self.le) if self.le is not None else None
        if low and high:
            if low[0] == ">=" and high[0] == "<=":
                return f"between {_num(low[1])} and {_num(high[1])}" if prose else f"{_num(low[1])} to {_num(high[1])}"
            return f"in {'(' if low[0] == '>' else '['}{_num(low[1])}, {_num(high[1])}{')' if high[0] == '<' else ']'}"
        bound = low or high
        return f"{bound[0]} {_num(bound[1])}" if bound else "any number"


def _num(value: float | None) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


#: Reusable ranges.
positive = Range(gt=0)
non_negative = Range(ge=0)
unit_interval = Range(ge=0, le=1)
#: ``(0, 1]``: a probability mass or share that cannot be zero (top-p, a memory fraction).
fraction = Range(gt=0, le=1)
#: What every seed consumer accepts: ``random.seed``, ``torch.manual_seed`` and ``numpy.random.seed``
#: (the narrowest: 0 to 2**32 - 1).
seed_range = Range(ge=0, le=2**32 - 1)


def device_spec(value: Any) -> str | None:
    """Require a torch device name: 'auto', 'cpu', 'cuda', 'cuda:N' (any ``type[:index]``)."""
    if value is None or re.fullmatch(r"[a-z]+(:[0-9]+)?", value):
        return None
    return f"must be a device such as 'auto', 'cpu', 'cuda' or 'cuda:1', got {value!r}"


def at_least(bound: float) -> Range:
    """Require value >= bound."""
    return Range(ge=bound)


def all_positive(values: Any) -> str | None:
    """Require every element of a list to be > 0."""
    bad = [v for v in values or () if not v > 0]
    return f"every entry must be > 0, got {bad!r}" if bad else None


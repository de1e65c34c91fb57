"""Values given on the command line, each read by the declared type of the option it sets.

Two forms: dotted overrides of a run's TOML (``skyrl train run.toml trainer.lr=1e-6``) and the
``--key value`` options of ``skyrl data prepare NAME``. A string option takes the text as it
is (``run.name=12`` is the string ``"12"``; quotes are optional, ``model.tokenizer="tok dir"``);
any other option reads it as a TOML value (``trainer.lr=1e-6``, ``"eval.pass_k=[1, 4]"``,
``data.shuffle=false``). Text that is no TOML value stays a string, so the validation that
follows reports it with its key path, as it would the same mistake in the file
(``trainer.lr: expected a number, got 'fast' (str)``).

The declared type is looked up where the loader validates the key: the fixed schema
(``RunConfig``), or the config class of the component the document selects for that table
(``[backend]``, ``[environments.<name>]``, ``[tracking.<name>]``, ``data.generate_options``,
plugin sections). A key whose type is unknown is read as TOML, else kept as a string.
"""

from __future__ import annotations

import functools
import sys
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs

from skyrl_core.config import schema
from skyrl_core.config.slots import SLOTS
from skyrl_core.errors import ConfigError, ConfigIssue, PluginError
from skyrl_core.specs import Kind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if typing.TYPE_CHECKING:
    from skyrl_core.plugins import Registry

_UNKNOWN = object()


# -- reading one value -------------------------------------------------------------------------


def takes_text(tp: Any) -> bool:
    """Whether an option of type ``tp`` holds text only (``str``, a ``Literal`` of strings,
    either of them or None)."""
    if tp is str:
        return True
    origin = typing.get_origin(tp)
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return bool(args) and all(takes_text(a) for a in args)
    return False


def parse_value(text: str, tp: Any = None) -> Any:
    """Command-line ``text`` as a value for an option of type ``tp`` (None: unknown)."""
    text = text.strip()
    if tp is not None and takes_text(tp):
        if text[:1] in ("'", '"'):
            value = _toml_value(text)
            if isinstance(value, str):
                return value
        return text
    value = _toml_value(text)
    return text if value is _UNKNOWN else value


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return _UNKNOWN


# -- the declared type of a key ----------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: types unknown
        return {}


def field_type(cls: Any, keys: Sequence[str]) -> Any:
    """The declared type of ``keys`` inside config class ``cls`` (None when unknown)."""
    tp: Any = cls
    for key in keys:
        owner = next((t for t in (tp, *typing.get_args(tp)) if attrs.has(t)), None)
        if owner is None:
            return None
        tp = _hints(owner).get(key)
        if tp is None:
            return None
    return tp


def _config_cls(registry: Registry, kind: Kind, name: Any) -> Any:
    if not isinstance(name, str):
        return None
    try:
        return registry.get(kind, name).spec.config_cls
    except PluginError:  # unknown or ambiguous: the loader reports it
        return None


def _table(raw: dict[str, Any], path: Sequence[str]) -> dict[str, Any]:
    node: Any = raw
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def declared_type(raw: dict[str, Any], keys: Sequence[str], registry: Registry | None = None) -> Any:
    """The type the schema declares for the dotted ``keys`` of document ``raw`` (None: unknown).

    Component tables are typed by the config class of the component ``raw`` selects there
    (which needs ``registry``)."""
    keys = tuple(keys)
    found = _component_type(raw, keys, registry) if registry is not None else _UNKNOWN
    return field_type(schema.RunConfig, keys) if found is _UNKNOWN else found


def _component_type(raw: dict[str, Any], keys: tuple[str, ...], registry: Registry) -> Any:
    """The type of a key inside a component's table; ``_UNKNOWN`` when ``keys`` is not in one."""
    own_sections = {f.name for f in attrs.fields(schema.RunConfig)}
    for slot in SLOTS:
        n = len(slot.path)
        if slot.shape == "named" and keys[:n] == slot.path and len(keys) > n:
            if keys[n:] == (slot.name_key,):
                return str
            name = _table(raw, slot.path).get(slot.name_key, slot.default)
            return field_type(_config_cls(registry, slot.kind, name), keys[n:])
        if slot.shape == "keyed" and keys[:n] == slot.path and len(keys) > n + 1:
            return field_type(_config_cls(registry, slot.kind, keys[n]), keys[n + 1 :])
        if slot.shape == "listed" and keys[:n] == slot.path and len(keys) > n + 1:
            if keys[n] not in {f.name for f in attrs.fields(schema.TrackingConfig)}:
                return field_type(_config_cls(registry, slot.kind, keys[n]), keys[n + 1 :])
        if slot.shape == "option" and keys[: n + 1] == (*slot.path, slot.options_key) and len(keys) > n + 1:
            name = _table(raw, slot.path).get(slot.name_key)
            return field_type(_config_cls(registry, slot.kind, name), keys[n + 1 :])
        if slot.shape == "section" and len(keys) > 1 and keys[0] not in own_sections:
            return field_type(_config_cls(registry, slot.kind, keys[0]), keys[1:])
    return _UNKNOWN


# -- dotted overrides --------------------------------------------------------------------------


def split_override(text: str) -> tuple[list[str], str]:
    """``"a.b=value"`` -> ``(["a", "b"], "value")``; a ``ConfigError`` when it is not of that form."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            [ConfigIssue("", f"override {text!r} must look like section.key=value (e.g. trainer.lr=1e-6)")],
            "command line",
        )
    return key.split("."), raw


def parse_override(text: str, tp: Any = None) -> tuple[list[str], Any]:
    """Split ``a.b=value`` and read the value for an option of type ``tp`` (see ``parse_value``)."""
    keys, raw = split_override(text)
    return keys, parse_value(raw, tp)


def apply_overrides(
    raw: dict[str, Any], overrides: Iterable[str], registry: Registry | None = None
) -> dict[str, str]:
    """Apply ``key.path=value`` overrides to a parsed TOML document in place, each value read by
    its key's declared type (``declared_type``; component options need ``registry``).

    Returns:
        ``{dotted key: override text}`` of what was set (to attribute errors to the command line).
    """
    applied: dict[str, str] = {}
    for text in overrides:
        keys, value_text = split_override(text)
        node = raw
        for i, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    [ConfigIssue(".".join(keys[: i + 1]), f"override {text!r}: this key is not a table")],
                    "command line",
                )
            node = child
        node[keys[-1]] = parse_value(value_text, declared_type(raw, keys, registry))
        applied[".".join(keys)] = text
    return applied


# -- --key value options -----------------------------------------------------------------------


def parse_options(options: Sequence[str], cls: Any = None) -> dict[str, Any]:
    """``['--rows', '10', '--ops=+,-']`` to ``{'rows': 10, 'ops': '+,-'}``: each value read by the
    type config class ``cls`` declares for it (see ``parse_value``); a flag alone is ``true``."""
    out: dict[str, Any] = {}
    items = list(options)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) == 2:
            raise ConfigError([ConfigIssue("", f"expected --key value, got {item!r}")], "command line")
        key = item[2:]
        if "=" in key:
            key, _, value = key.partition("=")
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            value = items[i + 1]
            i += 1
        else:
            value = "true"
        key = key.replace("-", "_")
        out[key] = parse_value(value, field_type(cls, [key]) if cls is not None else None)
        i += 1
    return out

"""The strict cattrs converter of config files, and the key-path issues its errors become.

``structure(data, cls, path)`` returns ``(object or None, issues)``: unknown keys are errors
(with "did you mean"), scalar types are never coerced (``"1"`` is no integer, ``1`` no
string), integers are bounded to 64 bits, something other than a table where a table
belongs is named as such (an array of tables written ``[[x]]`` for ``[x]``), and every
field's rules and check run (``skyrl_core.config.fields``), also on the parts of a table
that structure when another part does not, so that a file's problems are reported together.
An exception a config class raises itself (an attrs validator, a check that raises instead of
returning its message) is an issue naming the class's owner (component and distribution).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs
import cattrs
import cattrs.gen
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from skyrl_core.config.fields import value_problems
from skyrl_core.errors import ConfigIssue, did_you_mean

#: Unknown keys of one table that get a "did you mean" (the rest are counted; a generated file
#: with a million stray keys must not cost a million fuzzy matches).
SUGGESTED_KEYS = 20
#: Wrong items of one list that are reported; the rest of a list that long is not checked.
LIST_ERRORS = 100
INT64 = (-(2**63), 2**63 - 1)

# -- a strict converter ---------------------------------------------------------------------


class Rejected(Exception):
    """A value the converter refuses; its message is the issue's (the key path is added)."""


class NotATable(Rejected):
    """Something other than a table where a table belongs."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"expected a table, got {describe(value)}")
        self.value = value


def describe(value: Any) -> str:
    """``'big' (str)``: a value as the messages show it (long ones shortened)."""
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:70] + "..." + shown[-6:]
    return f"{shown} ({type(value).__name__})"


def not_a_table(path: str, value: Any) -> str:
    """The message for ``value`` written where the table ``[path]`` belongs."""
    where = f" [{path}]" if path else ""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return (f"expected a table{where}, got an array of tables ([[{path}]]); declare it once, with single "
                f"brackets: [{path}]")
    return f"expected a table{where}, got {describe(value)}"


def _digits(value: int) -> str:
    text = str(value)
    return text if len(text) <= 30 else f"{text[:12]}...{text[-4:]} ({len(text.lstrip('-'))} digits)"


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"expected an integer, got {describe(value)}")
    if not INT64[0] <= value <= INT64[1]:
        raise Rejected(f"expected a 64-bit integer (at most {INT64[1]} in size), got {_digits(value)}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Rejected(f"expected a number, got {describe(value)}")
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        raise Rejected(f"expected a number, got an integer beyond 64 bits ({_digits(value)}); write a float (1e30)")
    return float(value)


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise Rejected(f"expected true or false, got {describe(value)}")
    return value


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise Rejected(f"expected a string, got {describe(value)}")
    return value


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _structure_literal(value: Any, tp: Any) -> Any:
    allowed = typing.get_args(tp)
    if value in allowed and type(value) in {type(a) for a in allowed}:
        return value
    choices = ", ".join(repr(a) for a in allowed)
    hint = did_you_mean(value, [str(a) for a in allowed]) if isinstance(value, str) else ""
    raise Rejected(f"{value!r} is not one of {choices}.{hint}")


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, Sequence)


def _is_dict(tp: Any) -> bool:
    return tp is dict or typing.get_origin(tp) in (dict, Mapping)


def make_converter() -> cattrs.Converter:
    """A cattrs converter that forbids unknown keys, never coerces scalar types, bounds integers
    to 64 bits and names what it got where a table belongs."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook_func(_is_literal, _structure_literal)

    def structure_list(value: Any, tp: Any) -> Any:
        if not isinstance(value, list):
            raise Rejected(f"expected a list, got {describe(value)}")
        (item_type,) = typing.get_args(tp) or (Any,)
        errors: list[Exception] = []
        out = []
        for i, item in enumerate(value):
            try:
                out.append(conv.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [IterableValidationNote(f"index {i}", i, item_type)]
                errors.append(exc)
                if len(errors) == LIST_ERRORS and i + 1 < len(value):  # a generated list of a million wrong items
                    errors.append(Rejected(f"the first {LIST_ERRORS} wrong items are listed; the {len(value) - i - 1} "
                                           f"items after index {i} were not checked"))
                    break
        if errors:
            raise IterableValidationError("list items are invalid", errors, tp)
        return out

    def structure_dict(value: Any, tp: Any) -> Any:
        if not isinstance(value, dict):
            raise NotATable(value)
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        errors = []
        out = {}
        for key, item in value.items():
            try:
                out[conv.structure(key, key_type)] = conv.structure(item, value_type)
            except Exception as exc:
                exc.__notes__ = [AttributeValidationNote(f"key {key}", str(key), value_type)]
                errors.append(exc)
        if errors:
            raise ClassValidationError("table values are invalid", errors, tp)
        return out

    def table_hook(cls: type) -> Callable[[Any, Any], Any]:
        generated = cattrs.gen.make_dict_structure_fn(cls, conv)

        def structure_table(value: Any, tp: Any) -> Any:
            if not isinstance(value, dict):
                raise NotATable(value)
            return generated(value, tp)

        return structure_table

    conv.register_structure_hook_func(_is_list, structure_list)
    conv.register_structure_hook_func(_is_dict, structure_dict)
    conv.register_structure_hook_factory(attrs.has, table_hook)
    return conv


CONVERTER = make_converter()


# -- turning cattrs exceptions into key-path issues -----------------------------------------


def join_path(path: Sequence[str | int]) -> str:
    """``["data", "train", 1]`` -> ``"data.train[1]"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _issues_from(
    exc: BaseException, path: list[str | int], tp: Any = None, owner: str | None = None, data: Any = None
) -> list[ConfigIssue]:
    """The issues of a structuring error of ``data`` (the table or value at ``path``)."""
    if isinstance(exc, ClassValidationError):
        out: list[ConfigIssue] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            sub_data = data.get(note.name) if isinstance(data, dict) else None
            out += _issues_from(sub, [*path, note.name], note.type, owner, sub_data)
        for sub in without:
            out += _issues_from(sub, path, tp, owner, data)
        return out
    if isinstance(exc, IterableValidationError):
        out = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            sub_data = data[note.index] if isinstance(data, list) and note.index < len(data) else None
            out += _issues_from(sub, [*path, note.index], note.type, owner, sub_data)
        for sub in without:
            out += _issues_from(sub, path, tp, owner, data)
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = [a.name for a in attrs.fields(exc.cl)]
        # in the file's order (the set cattrs gives has none)
        keys = [k for k in data if k in exc.extra_fields] if isinstance(data, dict) else sorted(exc.extra_fields)
        return unknown_keys(path, keys, valid, data if isinstance(data, dict) else None)
    if isinstance(exc, NotATable):
        return [ConfigIssue(join_path(path), not_a_table(join_path(path), exc.value))]
    if isinstance(exc, Rejected):
        return [ConfigIssue(join_path(path), str(exc))]
    if isinstance(exc, KeyError):
        if tp is not None and attrs.has(tp):
            return [ConfigIssue(join_path(path), f"missing required section [{join_path(path)}].")]
        return [ConfigIssue(join_path(path), "missing required key.")]
    # raised by the config class itself (an attrs validator, __attrs_post_init__): name its owner
    return [ConfigIssue(join_path(path), _raised_by(owner, exc))]


def _raised_by(owner: str | None, exc: BaseException) -> str:
    return f"rejected by {owner or 'skyrl-core'}: {type(exc).__name__}: {exc}"


def unknown_keys(
    path: Sequence[str | int], keys: Sequence[str], valid: Sequence[str], values: Mapping[str, Any] | None = None
) -> list[ConfigIssue]:
    """One issue per unknown key of the table at ``path``; the first ``SUGGESTED_KEYS`` get a
    "did you mean" (or, for one of SkyRL's keys, ours: ``values`` are what the file wrote there)
    and the valid keys."""
    from skyrl_core.config.skyrl_keys import skyrl_hint

    out = []
    for i, key in enumerate(keys):
        where = join_path([*path, key])
        if i < SUGGESTED_KEYS:
            hint = skyrl_hint(where, values.get(key) if values else None)
            hint = f" {hint}" if hint else did_you_mean(key, valid)
            out.append(ConfigIssue(where, f"unknown key.{hint} Valid keys here: {', '.join(valid)}."))
        else:
            out.append(ConfigIssue(where, "unknown key."))
    return out


def structure(
    data: Any, cls: type, path: Sequence[str] = (), owner: str | None = None
) -> tuple[Any, list[ConfigIssue]]:
    """Structure ``data`` into ``cls``; return ``(obj or None, issues)``.

    ``owner`` names whose config class ``cls`` is (e.g. "the backend 'vllm' of
    skyrl-backend-vllm 0.1.0"), for the issues its own validators and checks raise.
    """
    if not isinstance(data, dict):
        return None, [ConfigIssue(join_path(path), not_a_table(join_path(path), data))]
    try:
        obj = CONVERTER.structure(data, cls)
    except Exception as exc:
        # One type error must not hide the value checks of the parts that are fine.
        issues = _issues_from(exc, list(path), cls, owner, data)
        return None, issues + _checks_of_valid_parts(data, cls, path, owner, _with_parents(i.path for i in issues))
    return obj, check_fields(obj, path, owner)


def _with_parents(paths: Iterable[str]) -> set[str]:
    """Every key path and the paths of the tables and lists around it."""
    out: set[str] = set()
    for path in paths:
        out.add(path)
        out.update(path[:i] for i, char in enumerate(path) if char in ".[")
    return out


def _checks_of_valid_parts(
    data: dict[str, Any], cls: type, path: Sequence[str], owner: str | None, failed: set[str]
) -> list[ConfigIssue]:
    """The value problems of every field of ``data`` that structures on its own (``failed``: the
    key paths that have an issue, and the tables around them; they are not structured again)."""
    if not attrs.has(cls):
        return []
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: nothing more to check
        return []
    out: list[ConfigIssue] = []
    for field in attrs.fields(cls):
        if field.name not in data:
            continue
        value, tp, sub_path = data[field.name], hints.get(field.name, field.type), [*path, field.name]
        broken = join_path(sub_path) in failed
        sub_cls = next((t for t in (tp, *typing.get_args(tp)) if attrs.has(t)), None)
        if sub_cls is not None and isinstance(value, dict):
            if broken:  # a problem inside: check the table's other fields one by one
                out += _checks_of_valid_parts(value, sub_cls, sub_path, owner, failed)
            else:
                out += check_fields(CONVERTER.structure(value, sub_cls), sub_path, owner)
            continue
        if broken or value is None:
            continue
        try:
            value = CONVERTER.structure(value, tp)
        except Exception:  # a type error, already reported
            continue
        out += _field_issues(field, value, sub_path, owner)
    return out


def _field_issues(
    field: attrs.Attribute, value: Any, path: Sequence[str | int], owner: str | None
) -> list[ConfigIssue]:
    try:
        found = value_problems(field, value)
    except Exception as exc:  # the field's check raised instead of returning a message
        return [ConfigIssue(join_path(path), _raised_by(owner, exc))]
    return [ConfigIssue(join_path([*path, *where]), message) for where, message in found]


def check_fields(obj: Any, path: Sequence[str] = (), owner: str | None = None) -> list[ConfigIssue]:
    """Run every field's rules and ``check`` (see ``skyrl_core.config.fields``), recursively over
    nested attrs objects."""
    out: list[ConfigIssue] = []
    if not attrs.has(type(obj)):
        return out
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if attrs.has(type(value)):
            out += check_fields(value, [*path, field.name], owner)
        elif value is not None:
            out += _field_issues(field, value, [*path, field.name], owner)
    return out

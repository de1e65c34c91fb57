"""Load a run's TOML file into a validated ``RunConfig``, reporting every error at once.

Steps: parse TOML, apply dotted command-line overrides (``trainer.lr=1e-6``), pull out
the tables owned by components and plugins, structure the rest with cattrs (unknown keys
forbidden, strict scalar types), validate each component table against the selected
component's config class, run the per-field checks and the cross-field checks (batch
sizes), and raise one ``ConfigError`` listing every problem with its key path.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from skyrl_core.config import schema
from skyrl_core.config.slots import SLOTS, Slot
from skyrl_core.errors import ConfigError, ConfigIssue, PluginError, did_you_mean
from skyrl_core.plugins import KNOWN_PROVIDERS, Registry
from skyrl_core.specs import Kind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# -- a strict converter ---------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_describe(value)}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {_describe(value)}")
    return float(value)


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_describe(value)}")
    return value


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    return value


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _structure_literal(value: Any, tp: Any) -> Any:
    allowed = typing.get_args(tp)
    if value in allowed and type(value) in {type(a) for a in allowed}:
        return value
    choices = ", ".join(repr(a) for a in allowed)
    hint = did_you_mean(value, [str(a) for a in allowed]) if isinstance(value, str) else ""
    raise ValueError(f"{value!r} is not one of {choices}.{hint}")


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) in (list, Sequence)


def make_converter() -> cattrs.Converter:
    """A cattrs converter that forbids unknown keys and never coerces scalar types."""
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict_int)
    conv.register_structure_hook(float, _strict_float)
    conv.register_structure_hook(bool, _strict_bool)
    conv.register_structure_hook(str, _strict_str)
    conv.register_structure_hook_func(_is_literal, _structure_literal)

    list_hook = conv.get_structure_hook(list[int])  # noqa: F841 - warm the factory

    def structure_list(value: Any, tp: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {_describe(value)}")
        (item_type,) = typing.get_args(tp) or (Any,)
        errors = []
        out = []
        for i, item in enumerate(value):
            try:
                out.append(conv.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), f"index {i}"]
                errors.append((i, exc))
        if errors:
            raise IterableValidationError(
                "list items are invalid",
                [_with_index(i, e, item_type) for i, e in errors],
                tp,
            )
        return out

    conv.register_structure_hook_func(_is_list, structure_list)
    return conv


def _with_index(index: int, exc: Exception, tp: Any) -> Exception:
    from cattrs.errors import IterableValidationNote

    exc.__notes__ = [IterableValidationNote(f"index {index}", index, tp)]
    return exc


CONVERTER = make_converter()


# -- turning cattrs exceptions into key-path issues -----------------------------------------


def _join(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def _issues_from(exc: BaseException, path: list[str | int], tp: Any = None) -> list[ConfigIssue]:
    if isinstance(exc, ClassValidationError):
        out: list[ConfigIssue] = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            out += _issues_from(sub, [*path, note.name], note.type)
        for sub in without:
            out += _issues_from(sub, path, tp)
        return out
    if isinstance(exc, IterableValidationError):
        out = []
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            out += _issues_from(sub, [*path, note.index], note.type)
        for sub in without:
            out += _issues_from(sub, path, tp)
        return out
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = [a.name for a in attrs.fields(exc.cl)]
        return [
            ConfigIssue(
                _join([*path, key]),
                f"unknown key.{did_you_mean(key, valid)} Valid keys here: {', '.join(valid)}.",
            )
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        if tp is not None and attrs.has(tp):
            return [ConfigIssue(_join(path), f"missing required section [{_join(path)}].")]
        return [ConfigIssue(_join(path), "missing required key.")]
    if isinstance(exc, (TypeError, ValueError)) and type(exc).__module__ == "builtins":
        msg = str(exc)
        if isinstance(exc, TypeError) and "expected" not in msg:
            msg = f"expected a table (section), got something else ({msg})"
        return [ConfigIssue(_join(path), msg)]
    return [ConfigIssue(_join(path), f"{type(exc).__name__}: {exc}")]


def structure(data: Any, cls: type, path: Sequence[str] = ()) -> tuple[Any, list[ConfigIssue]]:
    """Structure ``data`` into ``cls``; return ``(obj or None, issues)``."""
    if not isinstance(data, dict):
        return None, [ConfigIssue(_join(path), f"expected a table (section), got {_describe(data)}")]
    try:
        obj = CONVERTER.structure(data, cls)
    except Exception as exc:
        # One type error must not hide the value checks of the parts that are fine.
        return None, _issues_from(exc, list(path), cls) + _checks_of_valid_parts(data, cls, path)
    return obj, check_fields(obj, path)


def _checks_of_valid_parts(data: dict[str, Any], cls: type, path: Sequence[str]) -> list[ConfigIssue]:
    """The ``check`` issues of every field of ``data`` that structures on its own."""
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
        sub_cls = next((t for t in (tp, *typing.get_args(tp)) if attrs.has(t)), None)
        if sub_cls is not None and isinstance(value, dict):
            try:
                out += check_fields(CONVERTER.structure(value, sub_cls), sub_path)
            except Exception:  # its structure errors are already reported
                out += _checks_of_valid_parts(value, sub_cls, sub_path)
            continue
        check = field.metadata.get("check")
        if check is None or value is None:
            continue
        try:
            message = check(CONVERTER.structure(value, tp))
        except Exception:  # a type error, already reported
            continue
        if message:
            out.append(ConfigIssue(_join(sub_path), message))
    return out


def check_fields(obj: Any, path: Sequence[str] = ()) -> list[ConfigIssue]:
    """Run every field's ``check`` (see ``option``), recursively over nested attrs objects."""
    out: list[ConfigIssue] = []
    if not attrs.has(type(obj)):
        return out
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        check = field.metadata.get("check")
        if check is not None and value is not None:
            message = check(value)
            if message:
                out.append(ConfigIssue(_join([*path, field.name]), message))
        if attrs.has(type(value)):
            out += check_fields(value, [*path, field.name])
    return out


# -- overrides -------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value``; the value is read as a TOML value, else kept as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            [ConfigIssue("", f"override {text!r} must look like section.key=value (e.g. trainer.lr=1e-6)")],
            "command line",
        )
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, str]:
    """Apply ``key.path=value`` overrides to a parsed TOML document in place.

    Returns:
        ``{dotted key: override text}`` of what was set (to attribute errors to the command line).
    """
    applied: dict[str, str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for i, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    [ConfigIssue(".".join(keys[: i + 1]), f"override {text!r}: this key is not a table")],
                    "command line",
                )
            node = child
        node[keys[-1]] = value
        applied[".".join(keys)] = text
    return applied


# -- the loader ------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, turning syntax errors and missing files into ``ConfigError``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([ConfigIssue("", f"config file not found: {p} (check the path)")], str(p))
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([ConfigIssue("", f"TOML syntax error: {exc}")], str(p)) from exc


def load_config(path: str | Path, overrides: Iterable[str] = (), registry: Registry | None = None) -> schema.RunConfig:
    """Read, override and validate a run config file."""
    raw = read_toml(path)
    set_here = apply_overrides(raw, overrides)
    try:
        return parse_config(raw, registry=registry, source=str(path))
    except ConfigError as exc:
        issues = [_blame_override(issue, set_here) for issue in exc.issues]
        if issues == exc.issues:
            raise
        raise ConfigError(issues, f"{path} (with command-line overrides)") from exc


def _blame_override(issue: ConfigIssue, set_here: dict[str, str]) -> ConfigIssue:
    """Say so when a problem is at a key (or inside a table) that a command-line override set."""
    for key, text in set_here.items():
        if issue.path == key or issue.path.startswith(key + "."):
            return ConfigIssue(issue.path, f"{issue.message} (from the command-line override {text!r})")
    return issue


def _pop_path(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if not isinstance(node, dict):
        return None
    return node.pop(path[-1], None)


def _get_path(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = raw
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def structure_component(
    registry: Registry, kind: Kind, name: str, options: dict[str, Any], path: Sequence[str], name_path: Sequence[str]
) -> tuple[Any, list[ConfigIssue]]:
    """Validate a component's options against its config class; ``(config, issues)``.

    Absent options give the config class's defaults (None when the component takes no
    options). ``path`` locates the options table, ``name_path`` the key that chose the name.
    """
    try:
        comp = registry.get(kind, name)
    except PluginError as exc:  # unknown, or provided by two distributions
        return None, [ConfigIssue(_join(name_path), str(exc))]
    cls = comp.spec.config_cls
    if cls is None:
        if options:
            keys = ", ".join(sorted(options))
            return None, [ConfigIssue(_join(path), f"{kind.label} {name!r} takes no options, got: {keys}")]
        return None, []
    return structure(options, cls, path)


@attrs.define
class _Chosen:
    """What the component slots of one document chose, before and after validation."""

    named: dict[Kind, tuple[str, dict[str, Any]]] = attrs.field(factory=dict)
    keyed: dict[str, Any] = attrs.field(factory=dict)  # environments: name -> options table
    listed: dict[str, Any] = attrs.field(factory=dict)  # trackers: name -> options table
    sections: dict[str, Any] = attrs.field(factory=dict)  # plugin sections: name -> table


def _take_slots(raw: dict[str, Any], issues: list[ConfigIssue]) -> _Chosen:
    """Pull every component table out of ``raw`` (the fixed schema validates the rest)."""
    chosen = _Chosen()
    for slot in SLOTS:
        if slot.shape == "named":
            table = _pop_path(raw, slot.path)
            table = {} if table is None else table
            if not isinstance(table, dict):
                message = f"expected a table with `name = ...`, got {_describe(table)}"
                issues.append(ConfigIssue(_join(slot.path), message))
                continue
            table = dict(table)
            name = table.pop(slot.name_key, slot.default)
            if not isinstance(name, str):
                message = f"expected a string, got {_describe(name)}"
                issues.append(ConfigIssue(_join([*slot.path, slot.name_key]), message))
                continue
            chosen.named[slot.kind] = (name, table)
        elif slot.shape == "keyed":
            tables = _pop_path(raw, slot.path) or {}
            if not isinstance(tables, dict):
                issues.append(ConfigIssue(_join(slot.path), f"expected tables like [{_join(slot.path)}.<name>]"))
                tables = {}
            chosen.keyed = tables
        elif slot.shape == "listed":
            parent = _get_path(raw, slot.path)
            if isinstance(parent, dict):
                own = {f.name for f in attrs.fields(schema.TrackingConfig)} - {"options"}
                for key in [k for k, v in parent.items() if k not in own and isinstance(v, dict)]:
                    chosen.listed[key] = parent.pop(key)
    own_sections = {f.name for f in attrs.fields(schema.RunConfig)} - {"sections", "environments"}
    chosen.sections = {k: raw.pop(k) for k in [k for k in raw if k not in own_sections]}
    return chosen


def _validate_slots(cfg: schema.RunConfig | None, chosen: _Chosen, registry: Registry) -> list[ConfigIssue]:
    """Validate every chosen component's options with its own config class and store the result
    (defaults filled in) on ``cfg``. When the fixed schema failed (``cfg`` None) the component
    tables are still checked, so that one file's errors are reported together."""
    issues: list[ConfigIssue] = []
    for slot in SLOTS:
        if slot.shape == "named":
            name, options = chosen.named.get(slot.kind, (slot.default, {}))
            obj, found = structure_component(
                registry, slot.kind, name, options, slot.path, (*slot.path, slot.name_key)
            )
            issues += found
            if cfg is not None:
                _set_ref(cfg, slot, schema.ComponentRef(name=name, config=obj))
        elif slot.shape == "keyed":
            issues += _validate_keyed(cfg, slot, chosen.keyed, registry)
        elif slot.shape == "listed" and cfg is not None:
            issues += _validate_listed(cfg, slot, chosen.listed, registry)
        elif slot.shape == "option" and cfg is not None:
            issues += _check_generate(cfg, registry)
        elif slot.shape == "section":
            issues += _validate_sections(cfg, chosen.sections, registry)
    return issues


def _set_ref(cfg: schema.RunConfig, slot: Slot, ref: schema.ComponentRef) -> None:
    owner: Any = cfg
    for key in slot.path[:-1]:
        owner = getattr(owner, key)
    setattr(owner, slot.path[-1], ref)


def _validate_keyed(
    cfg: schema.RunConfig | None, slot: Slot, tables: dict[str, Any], registry: Registry
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    envs: dict[str, Any] = {}
    for env_name, table in tables.items():
        where = (*slot.path, env_name)
        if not isinstance(table, dict):
            issues.append(ConfigIssue(_join(where), f"expected a table, got {_describe(table)}"))
            continue
        obj, found = structure_component(registry, slot.kind, env_name, table, where, where)
        issues += found
        envs[env_name] = obj
    if cfg is None:
        return issues
    default_env = cfg.data.default_env_class
    if default_env and default_env not in envs:
        name_path = ("data", "default_env_class")
        obj, found = structure_component(registry, slot.kind, default_env, {}, (*slot.path, default_env), name_path)
        issues += found
        if not found:
            envs[default_env] = obj
    cfg.environments = envs
    return issues


def _validate_listed(
    cfg: schema.RunConfig, slot: Slot, tables: dict[str, Any], registry: Registry
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    names = cfg.tracking.trackers
    for tname in tables:
        if tname not in names:
            issues.append(ConfigIssue(f"{_join(slot.path)}.{tname}", f"options given but {tname!r} is not listed in "
                                      f"{_join([*slot.path, slot.options_key or ''])}"))
    for tname in names:
        obj, found = structure_component(
            registry, slot.kind, tname, tables.get(tname, {}), (*slot.path, tname), (*slot.path, slot.options_key or "")
        )
        issues += found
        cfg.tracking.options[tname] = obj
    return issues


def _validate_sections(
    cfg: schema.RunConfig | None, tables: dict[str, Any], registry: Registry
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    own_sections = {f.name for f in attrs.fields(schema.RunConfig)} - {"sections", "environments"}
    sections: dict[str, Any] = {}
    for sec_name, table in tables.items():
        comp = registry.components[Kind.CONFIG_SECTION].get(sec_name)
        if comp is None:
            hint = did_you_mean(sec_name, list(own_sections) + registry.names(Kind.CONFIG_SECTION))
            msg = f"unknown section [{sec_name}].{hint}"
            dist = KNOWN_PROVIDERS[Kind.CONFIG_SECTION].get(sec_name)
            if dist:
                msg += f" It is provided by {dist}: `pip install {dist}`."
            issues.append(ConfigIssue(sec_name, msg))
            continue
        obj, found = structure(table, comp.spec.config_cls, (sec_name,)) if comp.spec.config_cls else (table, [])
        issues += found
        sections[sec_name] = obj
    if cfg is not None:
        cfg.sections = sections
    return issues


def parse_config(raw: dict[str, Any], registry: Registry | None = None, source: str = "<config>") -> schema.RunConfig:
    """Validate a parsed TOML document; raise ``ConfigError`` with every problem found.

    Every selected component's options are validated by its own config class and stored,
    defaults filled in, on the returned config (``cfg.backend.config``,
    ``cfg.tracking.options[name]``, ``cfg.environments[name]`` for the environments the file
    configures or names as ``data.default_env_class``, ...), so nothing later looks defaults up.
    """
    if registry is None:
        from skyrl_core.plugins import build_registry

        registry = build_registry()
    raw = _deepcopy(raw)
    issues: list[ConfigIssue] = []

    # 0. Defaults the document implies through plugins (presets); the user's keys win.
    issues += apply_plugin_defaults(raw, registry)
    # 1. Component tables (see skyrl_core.config.slots): pulled out, validated once the rest is.
    chosen = _take_slots(raw, issues)
    # 2. The fixed schema.
    cfg, found = structure(raw, schema.RunConfig)
    issues += found
    # 3. Components, each against its own config class; then cross-table checks.
    issues += _validate_slots(cfg, chosen, registry)
    if cfg is not None:
        from skyrl_core.config.plan import plan_issues

        issues += plan_issues(cfg)
        issues += plugin_checks(cfg, registry)
    if issues:
        raise ConfigError(issues, source)
    assert cfg is not None
    return cfg


# -- plugin config hooks (skyrl_config_defaults, skyrl_check_config) ----------------------


def _each_impl(registry: Registry, hook_name: str, make_kwargs: Callable[[], dict[str, Any]]) -> list[tuple[str, Any]]:
    """``(plugin, result)`` of every implementation of a hook, in pluggy's call order, each
    called with fresh ``make_kwargs()``; a raised exception is returned as the result. Called
    one by one so that errors can name the plugin."""
    described = {p.name: p.describe() for p in registry.plugins}
    out: list[tuple[str, Any]] = []
    for impl in reversed(getattr(registry.hook, hook_name).get_hookimpls()):
        who = described.get(impl.plugin_name, impl.plugin_name)
        kwargs = make_kwargs()
        try:
            out.append((who, impl.function(**{name: kwargs[name] for name in impl.argnames})))
        except Exception as exc:  # reported as a config issue naming the plugin
            out.append((who, exc))
    return out


def apply_plugin_defaults(raw: dict[str, Any], registry: Registry) -> list[ConfigIssue]:
    """Layer every plugin's ``skyrl_config_defaults`` under ``raw`` in place; return the issues."""
    issues: list[ConfigIssue] = []
    merged: dict[str, Any] = {}
    owners: dict[tuple[str, ...], str] = {}
    for who, result in _each_impl(registry, "skyrl_config_defaults", lambda: {"raw": _deepcopy(raw)}):
        if isinstance(result, Exception):
            issues.append(
                ConfigIssue("", f"plugin {who}: skyrl_config_defaults raised {type(result).__name__}: {result}")
            )
        elif result is not None and not isinstance(result, dict):
            issues.append(
                ConfigIssue(
                    "",
                    f"plugin {who}: skyrl_config_defaults must return a dict of TOML values or None, "
                    f"got {type(result).__name__}",
                )
            )
        elif result:
            conflicts: list[tuple[tuple[str, ...], str]] = []
            _merge_defaults(merged, result, who, owners, (), conflicts)
            # A disagreement matters only where the document leaves the key unset.
            issues += [ConfigIssue(_join(path), msg) for path, msg in conflicts if not _is_set(raw, path)]
    _layer_under(raw, merged)
    return issues


def _merge_defaults(
    into: dict[str, Any],
    new: dict[str, Any],
    who: str,
    owners: dict[tuple[str, ...], str],
    path: tuple[str, ...],
    conflicts: list[tuple[tuple[str, ...], str]],
) -> None:
    for key, value in new.items():
        here = (*path, str(key))
        if isinstance(value, dict) and isinstance(into.setdefault(key, {}), dict):
            owners.setdefault(here, who)
            _merge_defaults(into[key], value, who, owners, here, conflicts)
        elif key in into and into[key] != value and owners.get(here, who) != who:
            message = (
                f"plugins {owners[here]} and {who} imply different defaults ({into[key]!r} and {value!r}); "
                "set this key in the config file to choose"
            )
            conflicts.append((here, message))
        else:
            into[key] = _deepcopy(value)
            owners[here] = who


def _is_set(raw: dict[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = raw
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _layer_under(raw: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, value in defaults.items():
        if key not in raw:
            raw[key] = _deepcopy(value)
        elif isinstance(raw[key], dict) and isinstance(value, dict):
            _layer_under(raw[key], value)


def plugin_checks(cfg: schema.RunConfig, registry: Registry) -> list[ConfigIssue]:
    """The issues every plugin's ``skyrl_check_config`` finds in a validated config."""
    issues: list[ConfigIssue] = []
    for who, result in _each_impl(registry, "skyrl_check_config", lambda: {"config": cfg}):
        if isinstance(result, Exception):
            issues.append(ConfigIssue("", f"plugin {who}: skyrl_check_config raised {type(result).__name__}: {result}"))
            continue
        for item in result or []:
            if not isinstance(item, ConfigIssue):
                item = ConfigIssue("", f"plugin {who}: skyrl_check_config returned {item!r}, not a ConfigIssue")
            issues.append(item)
    return issues


def _check_generate(cfg: schema.RunConfig, registry: Registry) -> list[ConfigIssue]:
    """``data.generate`` names a preparer and ``data.generate_options`` fit its config class."""
    name = cfg.data.generate
    if name is None:
        if cfg.data.generate_options:
            return [ConfigIssue("data.generate_options", "given but data.generate (the preparer) is not set")]
        return []
    if name not in registry.components[Kind.DATASET_PREPARER]:
        return [ConfigIssue("data.generate", registry.unknown_message(Kind.DATASET_PREPARER, name))]
    _, found = structure_component(
        registry,
        Kind.DATASET_PREPARER,
        name,
        dict(cfg.data.generate_options),
        ("data", "generate_options"),
        ("data", "generate"),
    )
    return found


def _deepcopy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj

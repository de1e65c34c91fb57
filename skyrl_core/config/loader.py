"""Load a run's TOML file into a validated ``RunConfig``, reporting every error at once.

Steps: read the file (``skyrl_core.config.source``: UTF-8, syntax errors, nesting depth),
apply dotted command-line overrides (``trainer.lr=1e-6``, each read by its key's declared
type: ``skyrl_core.config.overrides``), pull out the tables owned by components and plugins,
structure the rest with cattrs (unknown keys forbidden, strict scalar types, 64-bit integers,
tables where tables belong), validate each component table against the selected component's
config class, run the per-field rules and checks (``skyrl_core.config.fields``) and the
cross-field checks (batch sizes), and raise one ``ConfigError`` listing every problem with
its key path and, when the file writes that key, its line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.config import schema
from skyrl_core.config.converter import CONVERTER, SUGGESTED_KEYS, check_fields, not_a_table, structure
from skyrl_core.config.converter import describe as _describe
from skyrl_core.config.converter import join_path as _join
from skyrl_core.config.overrides import apply_overrides, parse_override
from skyrl_core.config.skyrl_keys import skyrl_hint
from skyrl_core.config.slots import SLOTS, Slot
from skyrl_core.config.source import KeyLines, read_document
from skyrl_core.errors import ConfigError, ConfigIssue, PluginError, did_you_mean
from skyrl_core.plugins import KNOWN_PROVIDERS, QUALIFIER, Registry
from skyrl_core.specs import Kind

__all__ = [
    "CONVERTER",
    "apply_overrides",
    "check_fields",
    "load_config",
    "parse_config",
    "parse_override",
    "read_toml",
    "structure",
    "structure_component",
]

# -- the loader ------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file, non-UTF-8 bytes, a syntax error or nesting that is too
    deep is a ``ConfigError`` (see ``skyrl_core.config.source``)."""
    return read_document(path)[0]


def load_config(path: str | Path, overrides: Iterable[str] = (), registry: Registry | None = None) -> schema.RunConfig:
    """Read, override and validate a run config file; every problem says its key path and, when
    the file writes that key, its line."""
    raw, text = read_document(path)
    if registry is None:
        from skyrl_core.plugins import build_registry

        registry = build_registry()
    set_here = apply_overrides(raw, overrides, registry)
    try:
        return parse_config(raw, registry=registry, source=str(path))
    except ConfigError as exc:
        # lines for the problems that are shown (a generated file may have a million)
        shown = exc.issues[: ConfigError.MAX_SHOWN]
        lines = KeyLines.of(text, wanted=[re.sub(r"\[\d+\]", "", i.path) for i in shown if i.path])
        issues = [_locate(issue, set_here, lines if i < len(shown) else None) for i, issue in enumerate(exc.issues)]
        overridden = any(_override_of(issue, set_here) for issue in exc.issues)
        raise ConfigError(issues, f"{path} (with command-line overrides)" if overridden else str(path)) from None


def _override_of(issue: ConfigIssue, set_here: dict[str, str]) -> str | None:
    """The command-line override that set the key (or a table around the key) of ``issue``."""
    for key, text in set_here.items():
        if issue.path == key or issue.path.startswith((key + ".", key + "[")) or key.startswith(issue.path + "."):
            return text
    return None


def _locate(issue: ConfigIssue, set_here: dict[str, str], lines: KeyLines | None) -> ConfigIssue:
    """Say so when a problem is at a key that a command-line override set; otherwise add the line
    of the file that writes its key."""
    text = _override_of(issue, set_here)
    if text is not None:
        return attrs.evolve(issue, message=f"{issue.message} (from the command-line override {text!r})", line=None)
    if issue.line is None and issue.path and lines is not None:
        return ConfigIssue(issue.path, issue.message, lines.line_of(issue.path))
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
    return structure(options, cls, path, owner=f"the {kind.label} {comp.name!r} of {comp.provider.describe()}")


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
                where = _join(slot.path)
                message = f"{not_a_table(where, table)} (its `name = ...` chooses the {slot.kind.label})"
                if isinstance(table, str):  # backend = "vllm"
                    message = f"{not_a_table(where, table)}; write [{where}] with name = {table!r}"
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
                where = _join(slot.path)
                message = f"{not_a_table(where, tables)}; the options of each {slot.kind.label} go in [{where}.<name>]"
                issues.append(ConfigIssue(where, message))
                tables = {}
            chosen.keyed = tables
        elif slot.shape == "listed":
            parent = _get_path(raw, slot.path)
            if isinstance(parent, dict):
                own = {f.name for f in attrs.fields(schema.TrackingConfig)} - {"options"}
                # a table, or an array of tables written by mistake (reported as such when validated)
                for key in [k for k, v in parent.items() if k not in own and _is_table_like(v)]:
                    chosen.listed[key] = parent.pop(key)
    own_sections = {f.name for f in attrs.fields(schema.RunConfig)} - {"sections", "environments"}
    chosen.sections = {k: raw.pop(k) for k in [k for k in raw if k not in own_sections]}
    return chosen


def _is_table_like(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and bool(value) and isinstance(value[0], dict))


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
    unknown = 0
    for env_name, table in tables.items():
        where = (*slot.path, env_name)
        if not isinstance(table, dict):
            issues.append(ConfigIssue(_join(where), not_a_table(_join(where), table)))
            continue
        if not registry.providers(slot.kind, env_name) and QUALIFIER not in env_name:
            unknown += 1
            if unknown > SUGGESTED_KEYS:  # a generated file with many stray names: no fuzzy matching
                issues.append(ConfigIssue(_join(where), f"no {slot.kind.label} named {env_name!r}."))
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
    unknown = 0
    for sec_name, table in tables.items():
        comp = registry.components[Kind.CONFIG_SECTION].get(sec_name)
        if comp is None:
            unknown += 1
            if unknown > SUGGESTED_KEYS:  # a generated file with many stray keys: no fuzzy matching
                issues.append(ConfigIssue(sec_name, f"unknown section [{sec_name}]."))
                continue
            known = list(own_sections) + registry.names(Kind.CONFIG_SECTION)
            hint = skyrl_hint(sec_name, table)
            hint = f" {hint}" if hint else did_you_mean(sec_name, known)
            msg = f"unknown section [{sec_name}].{hint}"
            dist = KNOWN_PROVIDERS[Kind.CONFIG_SECTION].get(sec_name)
            if dist:
                msg += f" It is provided by {dist}: `pip install {dist}`."
            issues.append(ConfigIssue(sec_name, msg))
            continue
        owner = f"the section [{sec_name}] of {comp.provider.describe()}"
        cls = comp.spec.config_cls
        obj, found = structure(table, cls, (sec_name,), owner=owner) if cls else (table, [])
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

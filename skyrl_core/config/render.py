"""Render configs: as plain dicts, as TOML, and the Markdown configuration reference."""

from __future__ import annotations

import json
import re
import typing
from typing import Any

import attrs

from skyrl_core.config import schema
from skyrl_core.config.fields import Range
from skyrl_core.config.slots import SLOTS, named_slots
from skyrl_core.plugins import Registry
from skyrl_core.specs import Kind


def to_dict(obj: Any) -> Any:
    """Unstructure a config (component refs become their table: ``name`` + options)."""
    if isinstance(obj, schema.ComponentRef):
        out = {"name": obj.name}
        if obj.config is not None:
            out.update(to_dict(obj.config))
        return out
    if isinstance(obj, schema.TrackingConfig):
        out = {"trackers": list(obj.trackers), "plot": obj.plot}
        for name, opts in obj.options.items():
            if opts is not None:
                out[name] = to_dict(opts)
        return out
    if isinstance(obj, schema.RunConfig):
        out = {f.name: to_dict(getattr(obj, f.name)) for f in attrs.fields(schema.RunConfig)}
        envs = out.pop("environments")
        out.pop("sections")
        if envs:
            out["environments"] = {k: v if v is not None else {} for k, v in envs.items()}
        for key, sub in obj.sections.items():
            out[key] = to_dict(sub)
        return out
    if attrs.has(type(obj)):
        return {f.name: to_dict(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    """A bare TOML key, or a quoted one where it holds other characters (``"skyrl-env-skyrlgym:gsm8k"``)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for config dicts (None values become comments)."""
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif value is None:
            lines.append(f"# {_toml_key(key)} = (unset)")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = "\n".join(lines)
    for key, value in tables:
        name = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
        body = to_toml(value, name)
        scalars = any(not isinstance(v, dict) for v in value.values())
        block = (f"[{name}]\n" if scalars or not value else "") + body
        out += ("\n\n" if out else "") + block.strip("\n")
    return out + ("\n" if not prefix else "")


def providers(cfg: schema.RunConfig, registry: Registry) -> dict[str, dict[str, str]]:
    """Which distribution provides each selected component."""
    out: dict[str, dict[str, str]] = {}
    for slot in named_slots():
        ref: Any = cfg
        for key in slot.path:
            ref = getattr(ref, key)
        comp = registry.components[slot.kind].get(ref.name)
        out[".".join(slot.path)] = {"name": ref.name, "provider": comp.provider.describe() if comp else "?"}
    for name in cfg.tracking.trackers:
        comp = registry.components[Kind.TRACKER].get(name)
        out[f"tracker {name}"] = {"name": name, "provider": comp.provider.describe() if comp else "?"}
    for name in cfg.environments:
        comp = registry.components[Kind.ENVIRONMENT].get(name)
        out[f"environment {name}"] = {"name": name, "provider": comp.provider.describe() if comp else "?"}
    for name in cfg.sections:
        comp = registry.components[Kind.CONFIG_SECTION].get(name)
        out[f"section {name}"] = {"name": name, "provider": comp.provider.describe() if comp else "?"}
    return out


# -- the reference ---------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) if a is not type(None) else "none" for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is Any:
        return "table"
    return getattr(tp, "__name__", str(tp))


def _default_text(field: attrs.Attribute) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()
    if attrs.has(type(default)) or default == {}:
        return "—"
    if default is None:
        return "unset"
    return f"`{_toml_value(default)}`" if not isinstance(default, dict) else "—"


def class_table(cls: type, section: str) -> list[str]:
    """Markdown rows documenting the scalar fields of one config class."""
    hints = typing.get_type_hints(cls, vars(schema))
    lines = [f"### `[{section}]`", "", (cls.__doc__ or "").strip().splitlines()[0], ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for f in attrs.fields(cls):
        tp = hints.get(f.name, f.type)
        if attrs.has(tp) or tp in (schema.ComponentRef,) or _is_optional_attrs(tp):
            continue
        if isinstance(cls, type) and cls is schema.RunConfig:
            continue
        if f.name in ("options",) and cls is schema.TrackingConfig:
            continue
        help_text = str(f.metadata.get("help", "")).replace("|", "\\|")
        type_text = _type_name(tp).replace("|", "\\|")
        check = f.metadata.get("check")
        if isinstance(check, Range):  # a declared range: shown with the type
            type_text += f", {check.describe()}"
        lines.append(f"| `{f.name}` | {type_text} | {_default_text(f)} | {help_text} |")
    return [*lines, ""]


def _is_optional_attrs(tp: Any) -> bool:
    args = typing.get_args(tp)
    return any(attrs.has(a) for a in args)


SECTIONS: list[tuple[str, type]] = [
    ("run", schema.RunSection),
    ("model", schema.ModelConfig),
    ("model.tiny", schema.TinyModelConfig),
    ("model.lora", schema.LoraConfig),
    ("data", schema.DataConfig),
    ("generator", schema.GeneratorConfig),
    ("algorithm", schema.AlgorithmConfig),
    ("algorithm.kl", schema.KLConfig),
    ("algorithm.tis", schema.TISConfig),
    ("trainer", schema.TrainerConfig),
    ("warm_start", schema.SFTConfig),
    ("eval", schema.EvalConfig),
    ("checkpoint", schema.CheckpointConfig),
    ("tracking", schema.TrackingConfig),
    ("runtime", schema.RuntimeConfig),
]


def reference_markdown(registry: Registry | None = None) -> str:
    """The configuration reference: every core table, then every builtin component's options."""
    from skyrl_core.plugins import build_registry

    registry = registry or build_registry(entry_points=False)
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by `skyrl config reference --out docs/config.md`; a test fails when it is stale. -->",
        "",
        "A run is one TOML file. Tables that choose a component by `name` (`[backend]`, `[strategy]`,",
        "`[algorithm.advantage]`, `[algorithm.policy_loss]`) take that component's options as their other",
        "keys; `[environments.<name>]` and `[tracking.<name>]` hold the options of an environment or tracker.",
        "Any key can be overridden on the command line: `skyrl train run.toml trainer.lr=1e-6`.",
        "",
        "A type such as `int, > 0` gives the range the value must lie in. Every number must be finite and",
        "every string (also in a list) non-empty unless the description says otherwise; integers fit 64 bits.",
        "",
        "## Core tables",
        "",
    ]
    for section, cls in SECTIONS:
        out += class_table(cls, section)
    out += ["## Component options (builtin components)", ""]
    table_of = {s.kind: ".".join(s.path) for s in named_slots()}
    table_of |= {s.kind: ".".join(s.path) + ".<name>" for s in SLOTS if s.shape in ("keyed", "listed")}
    for kind in Kind:
        for comp in sorted(registry.components[kind].values(), key=lambda c: c.name):
            if comp.spec.config_cls is None:
                continue
            where = table_of.get(kind, kind.value).replace("<name>", comp.name)
            out += [f"#### {kind.label} `{comp.name}`", "", comp.spec.summary, ""]
            rows = class_table(comp.spec.config_cls, where)[4:]
            if kind is Kind.DATASET_PREPARER:  # not a TOML table: command-line options or data.generate_options
                head = (f"Options of `skyrl data prepare {comp.name} --key value`, or keys of "
                        f"`[data.generate_options]` with `data.generate = \"{comp.name}\"`")
            else:
                chosen = "<" not in table_of.get(kind, "<")
                head = f"Table `[{where}]`" + (f" with `name = \"{comp.name}\"`" if chosen else "")
            out += [head, "", *rows] if attrs.fields(comp.spec.config_cls) else [head, "", "No options.", ""]
    return "\n".join(out).rstrip() + "\n"

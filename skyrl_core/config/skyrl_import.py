"""``skyrl config import-skyrl``: a SkyRL-Train config (YAML and/or Hydra overrides) as our TOML.

    skyrl config import-skyrl [--yaml FILE] [KEY=VALUE | +KEY=VALUE | ~KEY ...] --out run.toml
                              [--env skyrlgym|native] [--backend NAME] [--convention skyrl-train|skyrl]
                              [--set OUR.KEY=VALUE ...] [--no-validate]

Steps: SkyRL's defaults (the table of ``skyrl_core.config.skyrl_keys``), the YAML file and the
overrides, in that order, make SkyRL's effective config; ``${oc.env:VAR}`` and ``${a.b}``
interpolations are resolved; every leaf is translated by its rule, SkyRL's defaults included
(so the TOML reproduces SkyRL's behaviour where our defaults differ); ``--set`` overrides of
our own keys apply last; the result is validated with the installed plugins and written
atomically. The report names every translation, every semantic difference and every ignored
key; keys that cannot be placed are all listed in one error (exit 2) and nothing is written.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.checkpoint import atomic_write_text
from skyrl_core.config.skyrl_keys import (
    BY_KEY,
    ROOTS,
    TABLE,
    TABLE_VALUED,
    SkyrlKey,
    lookup,
)
from skyrl_core.config.skyrl_rules import ENV_ADAPTER, POLICY_LOSSES, as_list
from skyrl_core.errors import ConfigError, SkyrlError
from skyrl_core.specs import Kind

CONVENTIONS = ("skyrl-train", "skyrl")
ENV_MODES = ("skyrlgym", "native")
#: options of skyrl-gym environments that our own environment of the same name takes, by our name
NATIVE_ENV_OPTIONS = {"text2sql": {"db_path": "db_root"}}
_MISSING = object()


class ImportSkyrlError(SkyrlError):
    """SkyRL keys that cannot be placed (or an unreadable input); exit code 2."""


@attrs.define
class Outcome:
    """What became of one SkyRL key."""

    key: str
    value: Any
    explicit: bool
    settings: list[tuple[str, Any]] = attrs.field(factory=list)
    differences: list[str] = attrs.field(factory=list)
    ignored: str | None = None
    failure: str | None = None


@attrs.define
class Options:
    """The command's choices (see ``build_parser``)."""

    env: str = "skyrlgym"
    backend: str | None = None
    convention: str = "skyrl-train"
    sets: tuple[str, ...] = ()


# -- reading SkyRL's config ----------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A SkyRL YAML config file as a dict (Hydra's ``defaults`` list dropped: SkyRL's base config is
    built into the table)."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ImportSkyrlError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ImportSkyrlError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ImportSkyrlError(f"{path}: expected a mapping of SkyRL's sections (trainer, generator, ...), "
                               f"got {type(data).__name__}")
    data.pop("defaults", None)
    return data


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_value(text: str) -> Any:
    """A Hydra override's value: YAML (``null``, ``true``, ``['a', 'b']``, ``0.8``), with numbers such as
    ``1e-6`` that YAML 1.1 reads as text taken as numbers, as Hydra does."""
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        number = float(value)
        return int(number) if re.fullmatch(r"[-+]?\d+", value.strip()) else number
    return value


def parse_override(text: str) -> tuple[str, str, Any]:
    """``key=value``, ``+key=value``, ``++key=value`` or ``~key[=value]`` -> ``(op, key, value)``."""
    op = "set"
    body = text
    if body.startswith("++"):
        op, body = "set", body[2:]
    elif body.startswith("+"):
        op, body = "add", body[1:]
    elif body.startswith("~"):
        op, body = "delete", body[1:]
    key, sep, raw = body.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")) or (not sep and op != "delete"):
        raise ImportSkyrlError(f"override {text!r} must look like section.key=value (or +key=value, ~key), "
                               "as in SkyRL's scripts")
    return op, key, parse_value(raw) if sep else None


def _set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _del_path(tree: dict[str, Any], key: str) -> bool:
    node: Any = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf keys of a SkyRL config; the table-valued keys of the table stay whole."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value and path not in TABLE_VALUED:
            out.update(leaves(value, path))
        else:
            out[path] = value
    return out


def defaults_tree() -> dict[str, Any]:
    """SkyRL-Train's defaults, as a nested config (keys added with ``+`` in SkyRL have None)."""
    tree: dict[str, Any] = {}
    for entry in TABLE:
        _set_path(tree, entry.key, copy.deepcopy(entry.default))
    return tree


_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def resolve(flat: dict[str, Any], problems: dict[str, str]) -> None:
    """Resolve ``${oc.env:VAR[,default]}`` and ``${other.key}`` in string values, in place."""

    def one(key: str, value: Any, depth: int = 0) -> Any:
        if isinstance(value, list):
            return [one(key, v, depth) for v in value]
        if isinstance(value, dict):
            return {k: one(key, v, depth) for k, v in value.items()}
        if not isinstance(value, str) or "${" not in value:
            return value
        if depth > 10:
            problems[key] = f"interpolation loop in {value!r}"
            return value
        whole = _INTERPOLATION.fullmatch(value)
        if whole is not None:
            return sub(key, whole.group(1), depth)
        return _INTERPOLATION.sub(lambda m: str(sub(key, m.group(1), depth)), value)

    def sub(key: str, expr: str, depth: int) -> Any:
        if expr.startswith("oc.env:"):
            name, _, default = expr[len("oc.env:"):].partition(",")
            found = os.environ.get(name.strip())
            if found is None and not default:
                problems[key] = f"${{{expr}}}: the environment variable {name.strip()} is not set"
                return ""
            return found if found is not None else default.strip().strip("'\"")
        if expr in flat:
            return one(expr, flat[expr], depth + 1)
        problems[key] = f"cannot resolve ${{{expr}}} (only ${{oc.env:VAR}} and ${{other.key}} are understood)"
        return ""

    for key in list(flat):
        flat[key] = one(key, flat[key])


# -- the translation state the rules work on -----------------------------------------------------


class Translation:
    """SkyRL's effective config, the TOML being built and what became of each key.

    The rules of ``skyrl_core.config.skyrl_keys`` call its methods; ``current`` is the key whose
    rule runs."""

    def __init__(self, flat: dict[str, Any], explicit: set[str], options: Options, registry: Any) -> None:
        self.flat = flat
        self.explicit = explicit
        self.options = options
        self.registry = registry
        self.out: dict[str, Any] = {}
        self.outcomes: list[Outcome] = []
        self.current = ""
        self._outcome: Outcome | None = None
        self._set_by: dict[tuple[str, ...], str] = {}

    # reading SkyRL's config
    def get(self, key: str) -> Any:
        """The effective value of a SkyRL key (SkyRL's default unless the input sets it)."""
        return self.flat.get(key)

    def convention(self) -> str:
        return self.options.convention

    def estimator(self) -> str:
        return str(self.get("trainer.algorithm.advantage_estimator"))

    def policy_loss(self) -> str:
        return POLICY_LOSSES.get(self.get("trainer.algorithm.policy_loss_type"), "")

    def backend(self) -> str:
        return self.options.backend or str(self.get("generator.backend"))

    def strategy(self) -> str:
        gpus = self.get("trainer.placement.policy_num_nodes") * self.get("trainer.placement.policy_num_gpus_per_node")
        return "local" if gpus == 1 and self.get("trainer.placement.colocate_all") else "fsdp2"

    def policy_dtype(self) -> str:
        return "bfloat16" if self.get("trainer.bf16") else "float32"

    def max_sequence_tokens(self) -> int:
        """The longest sequence SkyRL allows: max input length + max generate length."""
        generate = self.get("generator.sampling_params.max_generate_length")
        return int(self.get("generator.max_input_length")) + int(generate)

    def available(self, kind: str) -> list[str]:
        return self.registry.names(Kind(kind))

    def component_has(self, kind: str, name: str, field: str) -> bool:
        comps = self.registry.providers(Kind(kind), name)
        cls = comps[0].spec.config_cls if comps else None
        return cls is not None and field in attrs.fields_dict(cls)

    def has_section(self, name: str) -> bool:
        return name in self.registry.components[Kind.CONFIG_SECTION]

    def overridden(self, ours: str) -> bool:
        return any(s.partition("=")[0].strip() == ours for s in self.options.sets)

    def train_rows(self) -> int | None:
        """Rows of SkyRL's training files, when they can be read here (None otherwise)."""
        total = 0
        for name in as_list(self.get("data.train_data")):
            count = _count_rows(Path(str(name)))
            if count is None:
                return None
            total += count
        return total

    # what the rules report
    def set(self, ours: str | Sequence[str], value: Any) -> None:
        """Set one of our keys (dotted, or its parts when a name holds a ``:``)."""
        parts = tuple(ours.split(".")) if isinstance(ours, str) else tuple(ours)
        before = self._set_by.get(parts)
        node = self.out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if before is not None and node.get(parts[-1]) != value:
            self.fail(f"sets {'.'.join(parts)} = {value!r}, but {before} set it to {node[parts[-1]]!r}")
            return
        node[parts[-1]] = value
        self._set_by[parts] = self.current
        assert self._outcome is not None
        self._outcome.settings.append((_dotted(parts), value))

    def differ(self, text: str) -> None:
        assert self._outcome is not None
        self._outcome.differences.append(text)

    def ignore(self, reason: str) -> None:
        assert self._outcome is not None
        self._outcome.ignored = reason

    def fail(self, text: str) -> None:
        assert self._outcome is not None
        self._outcome.failure = text

    def unused(self) -> None:
        """The key has nothing to set in this config (e.g. a loss option of a loss not chosen)."""

    def consumed_by(self, key: str) -> None:
        """Another key's rule reads this one."""

    def settings_made(self) -> bool:
        return bool(self._outcome and self._outcome.settings)

    # environments
    def set_env(self, env_class: str) -> None:
        if self.options.env == "skyrlgym":
            qualified = f"{ENV_ADAPTER}:{env_class}"
            self.set("data.default_env_class", qualified)
            self.set(("data", "env_map", env_class), qualified)
            self.differ(f"environment: skyrl-gym's own {env_class!r} through the adapter plugin ({qualified}), "
                        f"also for rows whose env_class is {env_class!r} ([data] env_map); --env native picks "
                        "skyrl's environment of that name instead")
            return
        if env_class not in self.available("environment"):
            self.fail(f"--env native: skyrl has no environment named {env_class!r} (installed: "
                      f"{', '.join(self.available('environment'))}); translate with --env skyrlgym to run "
                      "skyrl-gym's through the adapter")
            return
        self.set("data.default_env_class", env_class)
        self.differ(f"environment: skyrl's own {env_class!r} (--env native), which may score differently from "
                    "skyrl-gym's (see docs/skyrl_gym.md); the default --env skyrlgym runs skyrl-gym's")

    def set_env_config(self, env_id: str, options: dict[str, Any]) -> None:
        if self.options.env == "skyrlgym":
            qualified = f"{ENV_ADAPTER}:{env_id}"
            self.set(("data", "env_map", env_id), qualified)
            self.set(("environments", qualified, "env_config"), options)
            return
        names = NATIVE_ENV_OPTIONS.get(env_id, {})
        unknown = [k for k in options if k not in names]
        if unknown:
            self.fail(f"--env native: skyrl's {env_id!r} has no counterpart for skyrl-gym's options "
                      f"{', '.join(unknown)}; set [environments.{env_id}] by hand or translate with --env skyrlgym")
            return
        for key, value in options.items():
            self.set(("environments", env_id, names[key]), value)

    # running the table
    def run(self, entry: SkyrlKey, value: Any) -> Outcome:
        self.current = entry.key
        self._outcome = Outcome(entry.key, value, entry.key in self.explicit)
        entry.rule.apply(self, value)
        self.outcomes.append(self._outcome)
        return self._outcome


def _dotted(parts: Sequence[str]) -> str:
    return ".".join(f'"{p}"' if not re.fullmatch(r"[A-Za-z0-9_-]+", p) else p for p in parts)


def _count_rows(path: Path) -> int | None:
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if path.suffix == ".jsonl":
            with path.open(encoding="utf-8") as f:
                return sum(1 for line in f if line.strip())
        if path.suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return len(data) if isinstance(data, list) else None
    except (OSError, ValueError):
        return None
    return None


# -- the whole translation -----------------------------------------------------------------------


@attrs.define
class Result:
    """A translation: the TOML document, the outcome of every key and the validation error."""

    document: dict[str, Any]
    outcomes: list[Outcome]
    failures: list[tuple[str, str]]
    removed: list[str] = attrs.field(factory=list)
    invalid: ConfigError | None = None


def translate(
    yaml_file: str | Path | None, overrides: Sequence[str], options: Options, registry: Any
) -> Result:
    """Translate SkyRL's config (``yaml_file`` then ``overrides``); never raises for keys that
    cannot be placed: they are ``Result.failures``."""
    if options.env not in ENV_MODES:
        raise ImportSkyrlError(f"--env {options.env!r}: choose one of {', '.join(ENV_MODES)}")
    if options.convention not in CONVENTIONS:
        raise ImportSkyrlError(f"--convention {options.convention!r}: choose one of {', '.join(CONVENTIONS)}")
    tree = defaults_tree()
    explicit: set[str] = set()
    failures: list[tuple[str, str]] = []
    removed: list[str] = []
    if yaml_file is not None:
        given = read_yaml(yaml_file)
        _merge(tree, given)
        explicit |= set(leaves(given))
    for text in overrides:
        op, key, value = parse_override(text)
        if op == "delete":
            if not _del_path(tree, key):
                failures.append((key, f"~{key}: the key is not in the config"))
            removed.append(key)
            continue
        _set_path(tree, key, value)
        explicit |= set(leaves({key: value})) if isinstance(value, dict) and key not in TABLE_VALUED else {key}
    flat = leaves(tree)
    problems: dict[str, str] = {}
    resolve(flat, problems)
    failures += sorted(problems.items())
    # keys inside a table-valued key (environment.skyrl_gym.text2sql.db_path) count as that key
    explicit = {e if e in BY_KEY else _owner(e) for e in explicit}
    for key in flat:
        if lookup(key) is None:
            root = key.split(".")[0]
            where = "" if root in ROOTS else f" (SkyRL's sections are {', '.join(sorted(ROOTS))})"
            failures.append((key, f"not a SkyRL-Train config key that this translator knows{where}; check the "
                                  "spelling against SkyRL's ppo_base_config.yaml, or remove it"))
    t = Translation(flat, explicit, options, registry)
    for entry in TABLE:
        value = flat.get(entry.key, _MISSING)
        if value is _MISSING:  # removed with ~key: our default applies
            continue
        outcome = t.run(entry, value)
        if outcome.failure:
            failures.append((entry.key, f"= {_show(value)}: {outcome.failure}"))
    document = t.out
    if options.sets:
        from skyrl_core.config.overrides import apply_overrides

        apply_overrides(document, options.sets, registry)
    return Result(document, t.outcomes, failures, removed)


def _owner(key: str) -> str:
    entry = lookup(key)
    return entry.key if entry is not None else key


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, dict)) else repr(value)


def validate(result: Result, registry: Any, source: str) -> None:
    """Check the translated document as ``skyrl config validate`` would (sets ``result.invalid``)."""
    from skyrl_core.config.loader import parse_config

    try:
        parse_config(copy.deepcopy(result.document), registry, source=source)
    except ConfigError as exc:
        result.invalid = exc


# -- the report and the file ---------------------------------------------------------------------


def report_lines(result: Result, options: Options) -> list[str]:
    """What the command prints: translations, differences, ignored keys (SkyRL key = value -> ours)."""
    lines = [f"Translating a SkyRL config ({options.convention} conventions, environments: --env {options.env}"
             + (f", backend: --backend {options.backend}" if options.backend else "") + ")", "", "translations:"]
    for o in result.outcomes:
        if not o.settings:
            continue
        origin = f"{o.key} = {_show(o.value)}" + ("" if o.explicit else "  (SkyRL default)")
        first, *rest = o.settings
        lines.append(f"  {origin}  ->  {first[0]} = {_show(first[1])}")
        lines += [f"  {' ' * len(origin)}  ->  {k} = {_show(v)}" for k, v in rest]
    lines += ["", "differences:"]
    for o in result.outcomes:
        lines += [f"  {o.key}: {d}" for d in o.differences]
    ignored = [o for o in result.outcomes if o.ignored and o.explicit]
    if ignored:
        lines += ["", "ignored (no effect on what is trained here):"]
        lines += [f"  {o.key} = {_show(o.value)}: {o.ignored}" for o in ignored]
    if result.removed:
        lines += ["", "removed with ~ (our default applies):"]
        lines += [f"  {key}" for key in result.removed]
    if options.sets:
        lines += ["", "our own overrides (--set), applied after the translation:"]
        lines += [f"  {s}" for s in options.sets]
    return lines


def failure_message(failures: Sequence[tuple[str, str]]) -> str:
    n = len(failures)
    head = f"{n} SkyRL key{'s' if n != 1 else ''} cannot be placed in a skyrl config (nothing was written):"
    return "\n".join([head, *[f"  - {key} {text}" if text.startswith("=") else f"  - {key}: {text}"
                              for key, text in failures]])


def toml_text(document: dict[str, Any], header: Iterable[str] = ()) -> str:
    """The TOML file (keys that need it quoted, e.g. ``"skyrl-env-skyrlgym:gsm8k"``)."""
    from skyrl_core.config.render import to_toml

    head = "".join(f"# {line}\n" for line in header)
    return head + ("\n" if head else "") + to_toml(document)


def import_main(
    yaml_file: str | None, overrides: Sequence[str], out: str, options: Options, registry: Any,
    check: bool = True,
) -> int:
    """The command: translate, print the report, validate, write ``out``; exit 2 on any failure."""
    result = translate(yaml_file, overrides, options, registry)
    print("\n".join(report_lines(result, options)))
    if result.failures:
        raise ImportSkyrlError(failure_message(result.failures))
    if check:
        validate(result, registry, out)
        if result.invalid is not None:
            raise ImportSkyrlError(
                f"the translated config does not validate with the installed plugins (nothing was written):\n"
                f"{result.invalid}\nInstall what it names, choose other components (--env, --backend, --set), or "
                "write it anyway with --no-validate."
            )
    header = ["Translated from a SkyRL-Train config by `skyrl config import-skyrl`; its report says what each",
              "SkyRL key became and why (docs/migrating_from_skyrl.md)."]
    atomic_write_text(Path(out), toml_text(result.document, header))
    print(f"\nwrote {out}" + ("" if check else " (not validated: --no-validate)"))
    return 0

"""Every TOML snippet in docs/ validates, and every config key the pages mention exists.

* A ``toml`` block that looks like a ``pyproject.toml`` must parse and name its plugin module
  in ``[project.entry-points.skyrl]``; any other ``toml`` block is (part of) a run config and
  must pass ``parse_config`` with the installed plugins and the example packages of
  docs/examples (``[model] path`` is filled in when a fragment leaves it out). A component a
  page defines in its own Python code (``ComponentSpec("echo", ...)``) is accepted by name
  here; the page's own test registers the real class and validates its options.
* Config keys in the prose, in backticks: ``[table] key``, dotted ``table.key`` paths and
  ``[table]`` names must exist in the schema, in a component's config class (backend,
  strategy, estimator, loss, environment, tracker, dataset preparer for
  ``data.generate_options``) or in a plugin's section.
"""

from __future__ import annotations

import importlib
import re
import sys
import typing
from typing import Any

import attrs
import pytest
import tomllib
from docs_support import DOCS, Block, all_blocks, blocks, pages

from skyrl_core.config import schema
from skyrl_core.config.loader import parse_config
from skyrl_core.errors import ConfigError
from skyrl_core.plugins import build_registry
from skyrl_core.specs import Kind

TOML_BLOCKS = [b for b in all_blocks() if b.lang == "toml" and not b.skipped]
COMPONENT_TABLES = {
    "backend": Kind.BACKEND,
    "strategy": Kind.STRATEGY,
    "algorithm.advantage": Kind.ADVANTAGE_ESTIMATOR,
    "algorithm.policy_loss": Kind.POLICY_LOSS,
}


@pytest.fixture(scope="module")
def registry():
    """Installed plugins plus the example packages of docs/examples (imported from source)."""
    installed = {p.distribution for p in build_registry().plugins}
    extra, added = [], []
    for pyproject in sorted(DOCS.glob("examples/*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        if project["name"] in installed:
            continue
        sys.path.insert(0, str(pyproject.parent))
        added.append(str(pyproject.parent))
        for value in project["entry-points"]["skyrl"].values():
            extra.append((project["name"], importlib.import_module(value)))
    registry = build_registry(extra_plugins=extra)
    assert registry.conflicts == [], registry.conflicts
    yield registry
    for path in added:
        sys.path.remove(path)


def page_defined_components(page: str) -> set[str]:
    """Names that a page's own Python snippets register (checked by that page's test)."""
    code = "".join(b.body for b in blocks(DOCS / page) if b.lang == "python")
    return set(re.findall(r"ComponentSpec\(\s*\"([\w+-]+)\"", code))


def is_pyproject(raw: dict[str, Any]) -> bool:
    return "project" in raw or "build-system" in raw


def test_there_are_snippets():
    assert len(TOML_BLOCKS) > 40


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=lambda b: b.where)
def test_toml_snippet_is_valid(block: Block, registry):
    raw = tomllib.loads(block.body)
    if is_pyproject(raw):
        for name, value in raw.get("project", {}).get("entry-points", {}).get("skyrl", {}).items():
            assert re.fullmatch(r"[\w.]+", value), f"{block.where}: entry point {name} = {value!r} is not a module"
        return
    raw.setdefault("model", {}).setdefault("path", "m")
    try:
        parse_config(raw, registry, source=block.where)
    except ConfigError as exc:
        defined = page_defined_components(block.page)
        unexplained = [i for i in exc.issues if not any(f"'{n}'" in i.message or f".{n}" in i.path for n in defined)]
        assert not unexplained, str(exc)


# -- config keys mentioned in the prose ------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _attrs_class(tp: Any) -> type | None:
    """The attrs class in ``tp`` (``X``, ``X | None``), else None."""
    if attrs.has(tp):
        return tp
    for arg in typing.get_args(tp):
        if attrs.has(arg):
            return arg
    return None


def _component_options(registry, kind: Kind) -> set[str]:
    out: set[str] = set()
    for comp in registry.components[kind].values():
        if comp.spec.config_cls is not None:
            out |= {f.name for f in attrs.fields(comp.spec.config_cls)}
    return out


def key_exists(path: list[str], registry) -> bool:
    """Whether the dotted key path is a table or key of a run config."""
    head, rest = path[0], path[1:]
    sections = registry.components[Kind.CONFIG_SECTION]
    if head in sections:
        cls = sections[head].spec.config_cls
        return not rest or (cls is not None and _walk(cls, rest, registry, [head]))
    hints = _hints(schema.RunConfig)
    if head not in hints or head == "sections":
        return False
    return not rest or _walk(_attrs_class(hints[head]) or dict, rest, registry, [head])


def _walk(cls: type, rest: list[str], registry, seen: list[str]) -> bool:
    dotted = ".".join(seen)
    if dotted in COMPONENT_TABLES:
        options = _component_options(registry, COMPONENT_TABLES[dotted])
        return len(rest) == 1 and (rest[0] == "name" or rest[0] in options)
    if dotted == "environments":
        env = registry.components[Kind.ENVIRONMENT].get(rest[0])
        if env is None:
            return False
        return len(rest) == 1 or (env.spec.config_cls is not None and rest[1] in attrs.fields_dict(env.spec.config_cls))
    if dotted == "data.generate_options":
        return len(rest) == 1 and rest[0] in _component_options(registry, Kind.DATASET_PREPARER)
    if dotted == "tracking" and rest[0] in registry.components[Kind.TRACKER]:
        cls = registry.components[Kind.TRACKER][rest[0]].spec.config_cls
        return len(rest) == 1 or (cls is not None and rest[1] in attrs.fields_dict(cls))
    if not attrs.has(cls):
        return False
    hints = _hints(cls)
    if rest[0] not in hints:
        return False
    if len(rest) == 1:
        return True
    return _walk(_attrs_class(hints[rest[0]]) or dict, rest[1:], registry, [*seen, rest[0]])


TOP_LEVEL = set(_hints(schema.RunConfig)) - {"sections"}
FILE_SUFFIXES = (".parquet", ".json", ".jsonl", ".toml", ".safetensors", ".py", ".md", ".txt", ".jinja", ".png", ".sh")
SPAN = re.compile(r"`([^`\n]+)`")


def mentioned_keys(page) -> list[tuple[str, str]]:
    """``(span, dotted key)`` for every config key written in backticks in the page's prose."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    out = []
    for span in SPAN.findall(text):
        span = span.strip()
        if m := re.fullmatch(r"\[([a-z_][\w.]*)\](?:\s+([a-z_]\w*)(?:\s*=.*)?)?", span):
            table, key = m.groups()
            out.append((span, f"{table}.{key}" if key else table))
        elif m := re.fullmatch(r"([a-z_]\w*(?:\.[\w+-]+)+)(?:\s*=.*)?", span):
            if m.group(1).split(".")[0] in TOP_LEVEL and not m.group(1).endswith(FILE_SUFFIXES):
                out.append((span, m.group(1)))
    return out


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_config_key_mentioned_exists(page, registry):
    dapo = "dapo" in registry.components[Kind.CONFIG_SECTION]
    defined = page_defined_components(str(page.relative_to(DOCS)))
    unknown = []
    for span, key in mentioned_keys(page):
        parts = key.split(".")
        # `[environments.<name>]`, `[tracking.<name>]`: placeholders, not keys
        parts = [p for p in parts if not p.startswith("<")]
        if parts[0] == "dapo" and not dapo:
            continue
        if len(parts) > 1 and parts[0] == "environments" and parts[1] in defined:
            continue  # an environment the page defines itself (its own test validates the options)
        if parts and not key_exists(parts, registry):
            unknown.append(span)
    assert not unknown, f"docs/{page.relative_to(DOCS)} mentions config keys that do not exist: {unknown}"


def test_the_key_finder_finds_keys_and_rejects_wrong_ones(registry):
    assert key_exists(["trainer", "micro_batch_tokens"], registry)
    assert key_exists(["model", "tiny", "hidden_size"], registry)
    assert key_exists(["backend", "max_batch_size"], registry)
    assert key_exists(["environments", "arithmetic", "format_reward"], registry)
    assert key_exists(["data", "generate_options", "digits"], registry)
    assert not key_exists(["trainer", "train_batch_size"], registry)
    assert not key_exists(["backend", "no_such_option"], registry)
    assert not key_exists(["model", "tiny", "width"], registry)

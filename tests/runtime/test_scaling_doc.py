"""docs/scaling.md: its TOML snippets validate, its files exist, and every option is documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import attrs
import pytest

from skyrl_core.config.loader import parse_config
from skyrl_core.config.schema import RuntimeConfig
from skyrl_core.plugins import build_registry
from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)


def test_the_page_has_snippets():
    assert len(SNIPPETS) >= 4


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_toml_snippet_validates(index):
    snippet = "\n".join(line.strip() for line in SNIPPETS[index].splitlines())  # indented inside a list item
    raw = tomllib.loads(snippet)
    raw.setdefault("model", {"path": "m"})
    cfg = parse_config(raw, build_registry(entry_points=False), source=f"docs/scaling.md snippet {index + 1}")
    for key, value in raw.get("runtime", {}).items():
        assert getattr(cfg.runtime, key) == value


def test_mentioned_examples_exist_and_commands_name_them():
    files = set(re.findall(r"examples/multi_gpu/[\w.]+\.toml", TEXT))
    named = set(re.findall(r"`([\w.]+\.toml)`", TEXT))
    assert files and all((REPO / f).is_file() for f in files)
    assert all((REPO / "examples" / "multi_gpu" / n).is_file() for n in named), named
    for command in re.findall(r"skyrl train ([\w/.]+\.toml)", TEXT):
        assert (REPO / command).is_file(), command


def test_every_runtime_and_fsdp2_option_is_documented():
    for field in attrs.fields(RuntimeConfig):
        assert f"`{field.name}`" in TEXT, field.name
    for field in attrs.fields(Fsdp2StrategyConfig):
        assert f"`{field.name}`" in TEXT, field.name

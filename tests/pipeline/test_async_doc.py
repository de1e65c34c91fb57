"""docs/async.md: its TOML snippets validate, its options and metrics exist, its command runs."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from skyrl_core.config.loader import parse_config
from skyrl_core.plugins import build_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "docs" / "async.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
SOURCES = "\n".join(p.read_text() for p in (REPO / "skyrl_core" / "pipeline").glob("*.py"))
SOURCES += (REPO / "skyrl_core" / "trainer.py").read_text()


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_toml_snippet_validates_and_means_what_it_says(index):
    raw = tomllib.loads(SNIPPETS[index])
    raw.setdefault("model", {"path": "m"})
    cfg = parse_config(raw, build_registry(entry_points=False), source=f"docs/async.md snippet {index + 1}")
    for key, value in raw.get("trainer", {}).items():
        assert getattr(cfg.trainer, key) == value
    if cfg.trainer.mode != "sync":
        assert cfg.algorithm.tis.mode == raw.get("algorithm", {}).get("tis", {}).get("mode", "token")


def test_every_mode_option_is_documented():
    for name in ("max_staleness", "in_flight"):
        assert f"`{name}`" in TEXT, name
    assert "[trainer]\nmode = " in TEXT
    for value in ("sync", "one_step_off", "async", "finish", "abort"):
        assert f'"{value}"' in TEXT or f"`{value}`" in TEXT, value


def test_documented_metrics_are_the_ones_the_code_writes():
    table = TEXT.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    keys = re.findall(r"`((?:rollout|timing)/[\w/]+)`", table)
    assert len(keys) >= 8
    for key in keys:
        name = key.split("/", 1)[1]
        assert f'"{key}"' in SOURCES or f'run.timer("{name}")' in SOURCES or f'timer("{name}")' in SOURCES, key


def test_the_bench_command_names_a_file_and_flags_it_accepts():
    commands = re.findall(r"^python (bench/\S+\.py)(.*)$", TEXT, flags=re.MULTILINE)
    assert commands
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import async_steps
    finally:
        sys.path.remove(str(REPO / "bench"))
    for path, args in commands:
        assert (REPO / path).is_file()
        async_steps.build_parser().parse_args(shlex.split(args))

"""docs/algorithms.md: every TOML snippet validates, and every builtin is documented."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from skyrl_core.builtins.algorithms import ADVANTAGE_ESTIMATORS, POLICY_LOSSES
from skyrl_core.config.loader import parse_config
from skyrl_core.plugins import Registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "algorithms.md"
TEXT = DOC.read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)


def test_the_page_has_snippets() -> None:
    assert len(SNIPPETS) >= 10


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_toml_snippet_validates(index: int, registry_with: Callable[..., Registry]) -> None:
    raw = tomllib.loads(SNIPPETS[index])
    raw.setdefault("model", {"path": "m"})
    cfg = parse_config(raw, registry_with(), source=f"docs/algorithms.md snippet {index + 1}")
    # What the snippet set is what the config holds.
    for kind in ("advantage", "policy_loss"):
        table = raw.get("algorithm", {}).get(kind)
        if table:
            ref = getattr(cfg.algorithm, kind)
            assert ref.name == table["name"]
            for key, value in table.items():
                if key != "name":
                    assert getattr(ref.config, key) == value


@pytest.mark.parametrize("spec", ADVANTAGE_ESTIMATORS + POLICY_LOSSES, ids=lambda s: s.name)
def test_every_builtin_and_its_options_are_documented(spec) -> None:
    assert re.search(rf"^### .*`{re.escape(spec.name)}`", TEXT, flags=re.MULTILINE), spec.name
    import attrs

    for field in attrs.fields(spec.config_cls):
        assert f"`{field.name}" in TEXT, f"{spec.name}: option {field.name} is not mentioned"

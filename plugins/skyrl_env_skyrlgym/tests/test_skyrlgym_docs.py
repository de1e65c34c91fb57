"""docs/skyrl_gym.md against the real plugin with skyrl-gym installed: its TOML snippets validate
(the main docs tests skip them, having no skyrl-gym) and its quoted messages are the real ones."""

from __future__ import annotations

import re
import textwrap

import pytest
import tomllib
from skyrlgym_support import DIST, PROJECT_DIR, needs_skyrl_gym

from skyrl_core.api import ConfigError, DataError, Kind, parse_config, validate_rows

pytestmark = needs_skyrl_gym

PAGE = PROJECT_DIR.parents[1] / "docs" / "skyrl_gym.md"


def fenced(lang: str) -> list[str]:
    return re.findall(rf"^ *```{lang}\n(.*?)^ *```", PAGE.read_text(), flags=re.S | re.M)


def assert_quoted(block: str, message: str) -> None:
    """Every part of ``block`` between ``...`` appears in ``message``, in order (whitespace-normalized)."""
    text = " ".join(message.split())
    at = 0
    for part in (" ".join(p.split()) for p in block.split("...")):
        if part:
            found = text.find(part, at)
            assert found >= 0, f"not in the real message:\n  {part}\n  {text}"
            at = found + len(part)


def test_every_toml_snippet_validates(gym_registry):
    snippets = [textwrap.dedent(s) for s in fenced("toml")]
    assert len(snippets) == 2
    for snippet in snippets:
        raw = tomllib.loads(snippet)
        raw.setdefault("model", {}).setdefault("path", "m")
        cfg = parse_config(raw, gym_registry)
        for target in cfg.data.env_map.values():
            assert target.startswith(f"{DIST}:") and target in gym_registry.names(Kind.ENVIRONMENT)


def test_the_quoted_messages_are_the_real_ones(gym_registry):
    unknown, bad_key, timed_out, too_short = fenced("text")
    row = {"prompt": [{"role": "user", "content": "x"}], "env_class": "gsm8k"}
    with pytest.raises(DataError) as exc:
        validate_rows([("data.train", 0, row)], registry=gym_registry, what="data.train")
    assert_quoted(unknown, str(exc.value))

    base = {"model": {"path": "m"}, "data": {"train": ["t.jsonl"]}}
    with pytest.raises(ConfigError) as exc:
        parse_config({**base, "environments": {f"{DIST}:text2sql": {"env_config": {"db_pth": "x"}}}}, gym_registry)
    assert_quoted(bad_key, str(exc.value))

    with pytest.raises(ConfigError) as exc:
        parse_config({**base, "environments": {f"{DIST}:search": {"env_config": {"timeout": 90}}}}, gym_registry)
    assert_quoted(too_short, str(exc.value))

    # the format test_skyrlgym_rollouts.py checks on a real timed-out step
    pattern = rf"{DIST}:(\w+): step timed out after [\d.]+ s \(env_timeout_s of SkyRLGymEnv\[\1\]\)"
    assert re.fullmatch(pattern, timed_out.strip())

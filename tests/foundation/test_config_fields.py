"""Declared ranges and the rules every config value obeys (skyrl_core.config.fields), for core and plugin
config classes alike."""

from __future__ import annotations

import math

import attrs
import pytest

from skyrl_core.api import ComponentSpec, Range, at_least, fraction, hookimpl, option, positive, seed_range
from skyrl_core.config.loader import structure
from skyrl_core.config.render import class_table
from skyrl_core.errors import ConfigError, ConfigIssue
from skyrl_core.testing import check_plugin


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (positive, 0, "must be > 0, got 0"),
        (Range(ge=0, le=1), 1.5, "must be between 0 and 1, got 1.5"),
        (fraction, 0.0, "must be in (0, 1], got 0.0"),
        (Range(ge=0, lt=1), 1.0, "must be in [0, 1), got 1.0"),
        (seed_range, 2**32, "must be between 0 and 4294967295, got 4294967296"),
        (at_least(-1), -2, "must be >= -1, got -2"),
    ],
)
def test_a_range_says_what_it_accepts(check, value, message):
    assert check(value) == message
    assert check(None) is None


def test_ranges_show_in_the_configuration_reference():
    @attrs.define(kw_only=True)
    class Cfg:
        """Options."""

        seed: int = option(0, help="Seed.", check=seed_range)
        share: float = option(0.5, help="Share.", check=fraction)

    rows = "\n".join(class_table(Cfg, "x"))
    assert "| `seed` | int, 0 to 4294967295 | `0` | Seed. |" in rows
    assert "| `share` | float, in (0, 1] | `0.5` | Share. |" in rows


@attrs.define(kw_only=True)
class PluginOptions:
    """A plugin's options, declared the way every config class is."""

    name: str = option("x", help="A name.")
    prompt: str = option("", help="A prompt ('' for none).", allow_empty=True)
    timeout_s: float = option(5.0, help="Seconds.", check=positive)
    limit: float = option(math.inf, help="Upper limit (inf = none).", allow_inf=True)
    words: list[str] = option(factory=lambda: ["a"], help="Words.")


@pytest.mark.parametrize(
    ("table", "issues"),
    [
        ({"name": ""}, [("p.name", "must not be empty, got an empty string")]),
        ({"prompt": ""}, []),
        ({"timeout_s": math.nan}, [("p.timeout_s", "must be a number, got nan")]),
        ({"timeout_s": math.inf}, [("p.timeout_s", "must be finite, got inf")]),
        ({"limit": math.inf}, []),
        ({"limit": math.nan}, [("p.limit", "must be a number, got nan")]),
        ({"words": ["a", ""]}, [("p.words[1]", "must not be empty, got an empty string")]),
    ],
)
def test_the_rules_every_value_obeys_apply_to_plugin_classes(table, issues):
    _, found = structure(table, PluginOptions, ("p",))
    assert [(i.path, i.message) for i in found] == issues


def test_integers_beyond_64_bits_are_rejected():
    @attrs.define(kw_only=True)
    class Counts:
        """Counts."""

        n: int = option(1, help="N.")

    _, found = structure({"n": 2**63}, Counts, ("c",))
    assert [str(i) for i in found] == [
        "c.n: expected a 64-bit integer (at most 9223372036854775807 in size), got 9223372036854775808"
    ]


def test_check_plugin_flags_an_empty_default_that_is_not_declared_allowed():
    @attrs.define(kw_only=True)
    class Silent:
        """A default the loader would reject."""

        system_prompt: str = option("", help="System prompt.")

    @hookimpl
    def skyrl_register_config_sections():
        return [ComponentSpec("s", None, "A section.", Silent)]

    plugin = type("plugin", (), {"skyrl_register_config_sections": staticmethod(skyrl_register_config_sections)})
    problems = check_plugin(plugin, imports=False)
    assert problems == ["config section 's': config default system_prompt: must not be empty, got an empty string"]


def test_the_report_of_a_file_with_many_problems_is_capped():
    error = ConfigError([ConfigIssue(f"k{i}", "unknown key.", i + 1) for i in range(1000)], "f.toml")
    lines = str(error).splitlines()
    assert lines[0] == "f.toml: 1000 errors in the configuration"
    assert lines[1] == "  - k0: unknown key. (line 1)"
    assert len(lines) == 2 + ConfigError.MAX_SHOWN
    shown = ConfigError.MAX_SHOWN
    assert lines[-1] == f"  ... and {1000 - shown} more (the first {shown} are shown; fix those first)"
    assert len(error.issues) == 1000


def test_a_message_with_line_breaks_stays_on_one_line():
    text = str(ConfigError([ConfigIssue("a", "first\nsecond")]))
    assert text.splitlines()[1] == "  - a: first second"

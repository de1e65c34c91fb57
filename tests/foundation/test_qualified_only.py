"""``ComponentSpec(qualified_only=True)``: a component selectable only as ``distribution:name``,
so that an adapter of another framework's registry never shadows (or collides with) a component
of the same plain name."""

from __future__ import annotations

import pytest

from skyrl_core.api import ComponentSpec, Kind, StepOutput, TextEnv, hookimpl
from skyrl_core.errors import PluginError
from skyrl_core.plugins import UnknownComponentError
from skyrl_core.testing import fresh_registry


class OursEnv(TextEnv):
    def step(self, action: str) -> StepOutput:
        return StepOutput(reward=1.0)


class TheirsEnv(TextEnv):
    def step(self, action: str) -> StepOutput:
        return StepOutput(reward=0.5)


class Ours:
    __name__ = "skyrl-env-ours"

    @hookimpl
    def skyrl_register_environments(self):
        return [ComponentSpec("gsm8k", OursEnv, "our gsm8k")]


class Adapter:
    __name__ = "Skyrl_Env_Adapter"  # the qualified name uses the normalized distribution name

    @hookimpl
    def skyrl_register_environments(self):
        return [
            ComponentSpec("gsm8k", TheirsEnv, "their gsm8k", qualified_only=True),
            ComponentSpec("only_theirs", TheirsEnv, "an id we do not have", qualified_only=True),
        ]


def test_the_plain_name_stays_ours_and_the_qualified_name_selects_theirs():
    registry = fresh_registry(Ours(), Adapter())
    assert registry.conflicts == []
    assert registry.get(Kind.ENVIRONMENT, "gsm8k").load() is OursEnv
    for name in ("skyrl-env-adapter:gsm8k", "Skyrl_Env_Adapter:gsm8k"):
        comp = registry.get(Kind.ENVIRONMENT, name)
        assert comp.load() is TheirsEnv and comp.name == "skyrl-env-adapter:gsm8k"
    assert registry.get(Kind.ENVIRONMENT, "skyrl-env-ours:gsm8k").load() is OursEnv
    assert "skyrl-env-adapter:gsm8k" in registry.names(Kind.ENVIRONMENT)
    info = next(p for p in registry.plugins if p.distribution == "Skyrl_Env_Adapter")
    assert info.components == {"environment": ["skyrl-env-adapter:gsm8k", "skyrl-env-adapter:only_theirs"]}


def test_a_plain_name_only_the_adapter_has_is_unknown_and_the_error_names_the_qualified_one():
    registry = fresh_registry(Adapter())
    with pytest.raises(UnknownComponentError) as exc:
        registry.get(Kind.ENVIRONMENT, "only_theirs", where="rows.jsonl row 0, field 'env_class'")
    message = str(exc.value)
    assert message.startswith("rows.jsonl row 0, field 'env_class': no environment named 'only_theirs'.")
    assert "Selectable only by its qualified name: 'skyrl-env-adapter:only_theirs'." in message
    with pytest.raises(UnknownComponentError, match="no environment named 'gsm8k'"):
        registry.get(Kind.ENVIRONMENT, "gsm8k")  # ours is not installed: theirs does not stand in for it


def test_a_qualified_name_from_another_distribution_still_fails_clearly():
    registry = fresh_registry(Ours(), Adapter())
    with pytest.raises(UnknownComponentError, match="no environment 'gsm8k' from the distribution 'nope'"):
        registry.get(Kind.ENVIRONMENT, "nope:gsm8k")


def test_a_plain_spec_name_with_the_qualifier_is_refused():
    class Bad:
        __name__ = "skyrl-env-bad"

        @hookimpl
        def skyrl_register_environments(self):
            return [ComponentSpec("a:b", OursEnv, "colon")]

    registry = fresh_registry(Bad())
    info = next(p for p in registry.plugins if p.distribution == "skyrl-env-bad")
    assert info.status == "failed"
    assert "names cannot contain ':'" in info.error and "qualified_only=True" in info.error
    with pytest.raises(PluginError):
        registry.get(Kind.ENVIRONMENT, "a:b")

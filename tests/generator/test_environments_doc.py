"""docs/environments.md: the example environments run, their TOML validates, tools flow through the generator."""

from __future__ import annotations

import asyncio
import re
import sys
import types
from pathlib import Path

import pytest
from generator_doubles import ScriptedBackend

from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.config.loader import parse_config
from skyrl_core.config.schema import GeneratorConfig, ModelConfig, RunConfig
from skyrl_core.generator import generate_batch
from skyrl_core.testing import check_plugin, fresh_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "environments.md"
TEXT = DOC.read_text(encoding="utf-8")
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
TOML = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
PYPROJECT = re.findall(r"```toml pyproject\n(.*?)```", TEXT, flags=re.DOTALL)


@pytest.fixture(scope="module")
def doc_envs() -> types.ModuleType:
    """The page's Python snippets, run in order as one plugin module."""
    module = types.ModuleType("doc_envs")
    for snippet in PYTHON:
        exec(compile(snippet, str(DOC), "exec"), module.__dict__)
    return module


class MoreDocEnvs:
    """Registers the page's multi-turn and tool environments too."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    @hookimpl
    def skyrl_register_environments(self):
        return [
            ComponentSpec("guess", self.module.GuessEnv, "Guess a number."),
            ComponentSpec("calculator", self.module.CalculatorEnv, "Arithmetic with tools."),
        ]


@pytest.fixture(scope="module")
def doc_registry(doc_envs):
    return fresh_registry(doc_envs, MoreDocEnvs(doc_envs))


def test_the_page_has_its_examples(doc_envs):
    assert len(PYTHON) == 3 and len(TOML) == 3 and len(PYPROJECT) == 1
    assert check_plugin(doc_envs) == []


def test_pyproject_snippet_declares_the_entry_point():
    data = tomllib.loads(PYPROJECT[0])
    assert data["project"]["entry-points"]["skyrl"] == {data["project"]["name"]: "my_envs.plugin"}


@pytest.mark.parametrize("index", range(len(TOML)))
def test_toml_snippets_validate(index, doc_registry):
    raw = tomllib.loads(TOML[index])
    raw.setdefault("model", {"path": "m"})
    cfg = parse_config(raw, doc_registry, source=f"docs/environments.md snippet {index + 1}")
    for name, table in raw.get("environments", {}).items():
        for key, value in table.items():
            assert getattr(cfg.environments[name], key) == value


def test_reverse_env(doc_envs):
    config = doc_envs.ReverseConfig(partial_credit=0.1)
    extras = {"reward_spec": {"ground_truth": "olleh"}}
    assert doc_envs.ReverseEnv(config, extras).step(" olleh\n").reward == 1.0
    assert doc_envs.ReverseEnv(config, extras).step("It is olleh.").reward == 0.1
    env = doc_envs.ReverseEnv(config, extras)
    assert env.step("hello").reward == 0.0 and env.get_metrics() == {"solved": 0.0}


def run(backend, tokenizer, registry, rows, **generator):
    cfg = RunConfig(model=ModelConfig(path="unused"), generator=GeneratorConfig(**generator))
    return asyncio.run(
        generate_batch(rows, backend=backend, tokenizer=tokenizer, registry=registry, config=cfg, samples_per_prompt=1)
    )


def secret_row(env: str, truth: int, **extras) -> dict:
    return {"prompt": [{"role": "user", "content": "Go."}], "env_class": env,
            "reward_spec": {"ground_truth": str(truth)}, **extras}


def test_guess_env_multi_turn(tokenizer, doc_registry):
    replies = ["I think \\boxed{3}", "\\boxed{9}", "\\boxed{7}"]
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: replies[turn])
    batch = run(backend, tokenizer, doc_registry, [secret_row("guess", 7)], max_turns=4)
    (t,) = batch.trajectories
    assert [m["content"] for m in t.messages if m["role"] == "user"] == ["Go.", "Higher.", "Lower."]
    assert (t.num_turns, t.reward, t.finish_reason) == (3, 1.0, "stop")
    assert batch.metrics["rollout/retokenize_drift"] == 0.0


def test_calculator_env_tool_calls_through_the_generator(tokenizer, doc_registry):
    replies = [
        'Let me add. <tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call> (cut here)',
        "<tool_call>{add}</tool_call>",
        '<tool_call>{"name": "sub", "arguments": {}}</tool_call>',
        "So \\boxed{5}",
    ]
    backend = ScriptedBackend(tokenizer, lambda ctx, turn: replies[turn])
    batch = run(backend, tokenizer, doc_registry, [secret_row("calculator", 5)], max_turns=5)
    (t,) = batch.trajectories
    assert "</tool_call>" in backend.requests[0].params.stop
    assert t.messages[1]["content"].endswith("</tool_call>")  # stopped at the stop string
    tool_msgs = [m["content"] for m in t.messages if m["role"] == "tool"]
    assert tool_msgs[0] == "5"
    assert tool_msgs[1].startswith("error: the tool call is not valid JSON")
    assert tool_msgs[2].startswith("error: unknown tool 'sub' in group 'calculator'")
    assert (t.num_turns, t.reward, t.error) == (4, 1.0, None)
    assert batch.metrics["reward/calculator/tool_calls"] == 2.0
    assert batch.metrics["rollout/retokenize_drift"] == 0.0


def test_doc_envs_on_the_native_backend(native, tokenizer, doc_registry):
    rows = [
        secret_row("reverse", 0) | {"reward_spec": {"ground_truth": "olleh"}},
        secret_row("guess", 7),
        secret_row("calculator", 5),
    ]
    batch = run(native, tokenizer, doc_registry, rows, max_turns=3, max_new_tokens=6)
    assert [t.error for t in batch] == [None, None, None]
    assert {"reward/reverse/solved", "reward/calculator/tool_calls"} <= set(batch.metrics)
    for t in batch:
        t.check()
        assert 1 <= t.num_turns <= 3

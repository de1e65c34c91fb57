"""The adapter without a model: registration and naming, configs, and the translation of
skyrl-gym's environments (their real classes, a real SQLite database) to skyrl's contract."""

from __future__ import annotations

import re

import pytest
import skyrl_env_skyrlgym.plugin
import tomllib
from skyrl_env_skyrlgym import gym
from skyrlgym_support import (
    DIST,
    HAVE_SKYRL_GYM,
    PROJECT_DIR,
    SQL_GOLD,
    SQL_SOLUTION,
    make_database,
    needs_skyrl_gym,
    sql_rows,
)

from skyrl_core.api import (
    ComponentSpec,
    ConfigError,
    HasEnvTimeout,
    Kind,
    PluginError,
    StepOutput,
    TextEnv,
    build_registry,
    hookimpl,
    parse_config,
)
from skyrl_core.testing import check_plugin
from skyrl_core.testing.smoke import PluginSmoke

SMOKE = PluginSmoke(DIST, PROJECT_DIR)
PROMPT = [{"role": "user", "content": "What is 70 + 2?"}]


def env_of(registry, env_id: str, extras: dict, **options):
    """A fresh adapted environment for ``env_id`` with ``options`` (``SkyRLGymEnvConfig`` keys)."""
    comp = registry.get(Kind.ENVIRONMENT, f"{DIST}:{env_id}")
    return comp.load()(comp.spec.config_cls(**options), extras)


def run_config(registry, extra: dict, tmp_path) -> dict:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("")
    return {"model": {"path": str(tmp_path / "model")}, "data": {"train": [str(rows)]}, **extra}


def config_error(raw: dict, registry) -> str:
    """The message of the ``ConfigError`` that validating ``raw`` raises."""
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, registry)
    return str(exc.value)


# -- loading and naming ----------------------------------------------------------------------


def test_plugin_is_valid():
    assert check_plugin(skyrl_env_skyrlgym.plugin) == []


def test_loads_alone_with_one_environment_per_registered_id():
    if HAVE_SKYRL_GYM:
        from skyrl_gym.envs.registration import registry

        expected = {"environment": [f"{DIST}:{env_id}" for env_id in sorted(registry)]}
        assert {"gsm8k", "gsm8k_multi_turn", "text2sql", "search"} <= set(registry)
    else:
        expected = {}  # without skyrl-gym: loads, provides nothing
    SMOKE.assert_loads(expected)


def test_the_compatibility_page_states_the_tested_versions():
    page = (PROJECT_DIR.parents[1] / "docs" / "compatibility.md").read_text()
    (extra,) = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gym"]
    ci = (PROJECT_DIR / "scripts" / "ci.sh").read_text()
    version = re.search(r"SKYRL_GYM_VERSION:-([0-9.]+)", ci).group(1)
    torch = re.search(r"^TORCH_VERSION=([0-9.]+)", ci, flags=re.M).group(1)
    row = next(line for line in page.splitlines() if line.startswith("| skyrl-env-skyrlgym |"))
    assert f"`gym` extra: `{extra}`" in row and f"skyrl-gym **{version}**" in row and f"torch **{torch}**+cpu" in row


@needs_skyrl_gym
def test_readme_run_validates(tmp_path):
    (cfg,) = SMOKE.readme_runs()
    assert cfg.data.env_map["text2sql"] == f"{DIST}:text2sql"
    options = cfg.environments[f"{DIST}:text2sql"]
    assert (options.env_timeout_s, options.env_config) == (90, {"db_path": "data/sql/databases"})


class Ours:
    """Test double of skyrl's own gsm8k distribution (skyrl-env-gsm8k): only its name matters."""

    __name__ = "skyrl-env-ours"

    @hookimpl
    def skyrl_register_environments(self):
        class OurGsm8k(TextEnv):
            def step(self, action: str) -> StepOutput:
                return StepOutput(reward=1.0)

        return [ComponentSpec("gsm8k", OurGsm8k, "our gsm8k")]


@needs_skyrl_gym
def test_their_ids_are_qualified_and_never_answer_a_plain_name(gym_registry, monkeypatch):
    from skyrl_gym.envs.registration import registry as their_registry

    names = gym_registry.names(Kind.ENVIRONMENT)
    for env_id in their_registry:
        if env_id == "test:colon":
            assert not any(n.endswith(env_id) for n in names)  # a ':' in an id cannot be selected: left out
            continue
        comp = gym_registry.get(Kind.ENVIRONMENT, f"{DIST}:{env_id}")
        assert comp.spec.qualified_only and comp.provider.distribution == DIST
        assert comp.load().env_id == env_id
        assert env_id not in names
    with pytest.raises(PluginError) as exc:
        gym_registry.get(Kind.ENVIRONMENT, "gsm8k", where="data.train row 0, field 'env_class'")
    assert f"Selectable only by its qualified name: '{DIST}:gsm8k'." in str(exc.value)

    # with skyrl's own gsm8k installed, the plain name is ours and nothing conflicts
    monkeypatch.setenv("SKYRL_SKYRLGYM_MODULES", "")
    both = build_registry(only=[DIST], extra_plugins=[("skyrl-env-ours", Ours())])
    assert both.conflicts == []
    assert both.get(Kind.ENVIRONMENT, "gsm8k").provider.distribution == "skyrl-env-ours"
    assert both.get(Kind.ENVIRONMENT, f"{DIST}:gsm8k").load().env_id == "gsm8k"


@needs_skyrl_gym
def test_a_module_that_does_not_import_fails_the_plugin_with_its_name(monkeypatch):
    monkeypatch.setenv("SKYRL_SKYRLGYM_MODULES", "skyrlgym_no_such_module")
    registry = build_registry(only=[DIST])
    (info,) = [p for p in registry.plugins if p.distribution == DIST]
    assert info.status == "failed"
    assert info.error.startswith("skyrl_register_environments() failed: PluginError: SKYRL_SKYRLGYM_MODULES: ")
    assert "'skyrlgym_no_such_module'" in info.error and "ModuleNotFoundError" in info.error


def test_without_skyrl_gym_a_config_naming_its_environments_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(gym, "installed", lambda: False)
    registry = build_registry(only=[DIST])
    (info,) = [p for p in registry.plugins if p.distribution == DIST]
    assert (info.status, info.components) == ("ok", {})
    raw = run_config(registry, {}, tmp_path)
    raw["data"]["env_map"] = {"gsm8k": f"{DIST}:gsm8k", "plain": "arithmetic"}
    raw["environments"] = {f"{DIST}:text2sql": {"env_timeout_s": 90}}
    message = config_error(raw, registry)
    install = "and skyrl-gym is not installed: `pip install skyrl-gym` (or `pip install 'skyrl-env-skyrlgym[gym]'`)"
    assert f"data.env_map.gsm8k: '{DIST}:gsm8k' is skyrl-gym's environment, {install}" in message
    assert f"environments.{DIST}:text2sql: '{DIST}:text2sql' is skyrl-gym's environment, {install}" in message
    assert "data.env_map.plain" not in message


# -- configs: their dataclasses, DictConfig access, timeouts -----------------------------------


@needs_skyrl_gym
def test_options_reach_the_environment_as_a_dictconfig_typed_by_its_dataclass(gym_registry):
    from omegaconf import DictConfig

    env = env_of(gym_registry, "test_greeting", {}, env_config={"greeting": "hi"})
    assert isinstance(env, HasEnvTimeout) and env.env_timeout_s is None
    env.init(PROMPT)
    assert isinstance(env.env.spec.kwargs["env_config"], DictConfig)
    assert env.step("hi there").reward == 1.5  # greeting from the table, bonus from GreetingConfig's default
    assert env.get_metrics() == {"greeted": 1.0}  # numbers only
    untyped = env_of(gym_registry, "test_untyped", {}, env_config={"word": "ok"})
    untyped.init(PROMPT)
    assert untyped.step("ok then").reward == 1.0
    defaults = env_of(gym_registry, "test_untyped", {})
    defaults.init(PROMPT)
    assert defaults.step("yes").reward == 1.0


@needs_skyrl_gym
def test_misspelled_or_mistyped_options_fail_config_validation(gym_registry, tmp_path):
    key = f"{DIST}:test_greeting"
    raw = run_config(gym_registry, {"environments": {key: {"env_config": {"greting": "hi"}}}}, tmp_path)
    assert (
        f"environments.{key}.env_config: skyrl-gym's test_greeting: Key 'greting' not in 'GreetingConfig'. "
        "Did you mean: 'greeting'? (key 'greting'; GreetingConfig has: greeting, bonus, timeout)"
    ) in config_error(raw, gym_registry)
    raw["environments"][key]["env_config"] = {"bonus": "lots"}
    assert "Value 'lots' of type 'str' could not be converted to Float (key 'bonus'" in config_error(raw, gym_registry)
    raw["environments"] = {f"{DIST}:text2sql": {"env_config": {"db_pth": "x"}}}
    assert "Key 'db_pth' not in 'Text2SQLEnvConfig'. Did you mean: 'db_path'?" in config_error(raw, gym_registry)


@needs_skyrl_gym
def test_a_time_limit_shorter_than_the_environments_own_request_timeout_is_refused(gym_registry, tmp_path):
    key = f"{DIST}:search"
    raw = run_config(gym_registry, {"environments": {key: {"env_config": {"timeout": 90}}}}, tmp_path)
    assert (
        f"environments.{key}.env_timeout_s: env_timeout_s (unset: [generator] env_timeout_s) = 60 s is not longer "
        "than env_config.timeout = 90 s, the time skyrl-gym's search gives one request"
    ) in config_error(raw, gym_registry)
    raw["environments"][key]["env_timeout_s"] = 1000
    cfg = parse_config(raw, gym_registry)
    assert cfg.environments[key].env_timeout_s == 1000
    # the default of search's own dataclass (timeout = 30) counts too
    raw["environments"][key] = {}
    raw["generator"] = {"env_timeout_s": 20}
    assert "= 20 s is not longer than env_config.timeout = 30 s" in config_error(raw, gym_registry)


# -- the translation of their step output ------------------------------------------------------


@needs_skyrl_gym
def test_gsm8k_scores_exactly_as_skyrl_gym(gym_registry):
    import skyrl_gym

    extras = {"reward_spec": {"method": "rule", "ground_truth": "72"}, "max_turns": 1}
    for reply in ["so #### 72", "#### 72.", "#### 71", "The answer is 72", "#### 7,2", ""]:
        env = env_of(gym_registry, "gsm8k", dict(extras))
        assert env.init(PROMPT) == (PROMPT, {})
        out = env.step(reply)
        theirs = skyrl_gym.make("gsm8k", env_config={}, extras=dict(extras)).step(reply)
        assert isinstance(out, StepOutput)
        assert (out.reward, out.done, out.observations) == (theirs["reward"], True, [])
    assert env_of(gym_registry, "gsm8k", dict(extras)).init(PROMPT) and env.step("#### 72").reward == 1.0


@needs_skyrl_gym
def test_multi_turn_gsm8k_keeps_per_turn_rewards_observations_and_metrics(gym_registry):
    cls = gym_registry.get(Kind.ENVIRONMENT, f"{DIST}:gsm8k_multi_turn").load()
    env = cls(None, {"reward_spec": {"ground_truth": "72"}, "max_turns": 3})
    env.init(PROMPT)
    first, second, third = env.step("#### 70"), env.step("no idea"), env.step("#### 72")
    assert (first.reward, first.done) == (pytest.approx(0.2 / 3), False)
    assert first.observations[0]["role"] == "user" and "'#### ANSWER'" in first.observations[0]["content"]
    assert second.observations[0]["content"].startswith("Now provide only the final numeric answer")
    assert (second.reward, second.done) == (0.0, False)
    assert (third.reward, third.done, third.observations) == (1.0, True, [])
    assert env.get_metrics() == {"steps": 3.0}
    # their aggregate_metrics (avg_steps), not a plain mean per key
    assert cls.aggregate_metrics([{"steps": 3.0}, {"steps": 1.0}]) == {"avg_steps": 2.0}


@needs_skyrl_gym
def test_text2sql_runs_real_queries_and_keeps_their_metadata(gym_registry, tmp_path):
    db_path = make_database(tmp_path / "db")
    row = sql_rows()[0]
    extras = {**{k: v for k, v in row.items() if k != "prompt"}, "max_turns": 3}
    env = env_of(gym_registry, "text2sql", extras, env_config={"db_path": str(db_path)})
    assert env.init(row["prompt"])[0] == row["prompt"]
    query = env.step("<think>let me look</think><sql>SELECT name FROM items WHERE price > 10 ORDER BY name</sql>")
    assert not query.done and query.reward == 0
    assert "bag" in query.observations[0]["content"] and "book" in query.observations[0]["content"]
    assert "<reminder>You have 2 turns left to complete the task.</reminder>" in query.observations[0]["content"]
    assert query.metadata == {
        "tool_group": "SQLCodeExecutorToolGroup",
        "tool_name": "sql",
        "tool_input": ("shop", "SELECT name FROM items WHERE price > 10 ORDER BY name", 2),  # turns left
    }
    final = env.step(SQL_SOLUTION.replace("count them", "four rows"))
    assert (final.reward, final.done) == (1.0, True)
    env.close()
    # their format rule (a <think> before the solution) and a wrong result
    for reply, reward in [(f"<solution>{SQL_GOLD}</solution>", -1.0), (SQL_SOLUTION.replace("*", "id + 1"), 1.0),
                          (SQL_SOLUTION.replace("COUNT(*)", "SUM(price)"), 0.0)]:
        env = env_of(gym_registry, "text2sql", dict(extras), env_config={"db_path": str(db_path)})
        env.init(row["prompt"])
        assert env.step(reply).reward == reward, reply


@needs_skyrl_gym
def test_postprocessed_action_and_metadata_pass_through(gym_registry):
    env = env_of(gym_registry, "test_rewrite", {"max_turns": 2})
    env.init(PROMPT)
    out = env.step("first line\nsecond line")
    assert out.postprocessed_action == "[first line]"
    assert out.metadata == {"turn": 1, "kept": "[first line]"}
    assert (out.reward, out.done, out.observations) == (0.25, False, [{"role": "user", "content": "Turn 1 seen."}])


@needs_skyrl_gym
def test_their_errors_surface_with_their_message(gym_registry, tmp_path):
    env = env_of(gym_registry, "text2sql", {"db_id": "nope", "data": "spider", "reward_spec": {"ground_truth": "x"}},
                 env_config={"db_path": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="Database file not found at: "):
        env.init(PROMPT)
    env.close()  # nothing was created: closing is a no-op
    with pytest.raises(AssertionError, match="reward_spec field is required"):
        env_of(gym_registry, "gsm8k", {}).init(PROMPT)

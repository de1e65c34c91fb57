"""TOML → typed config: every error of a file at once, each with its key path (skyrl_core.config.loader)."""

from __future__ import annotations

import pytest
import tomllib
from foundation_support import BASE_TOML

from skyrl_core.config.loader import load_config, parse_config, parse_override
from skyrl_core.config.plan import make_plan
from skyrl_core.errors import ConfigError
from skyrl_core.specs import Kind
from skyrl_core.testing import fresh_registry


@pytest.fixture
def registry(everything):
    """Builtins + skyrl-test-everything (installed entry points off, so results do not depend on them)."""
    return fresh_registry(everything)


def parse(registry, extra: str = "", base: bool = True):
    text = (BASE_TOML + "\n" if base else "") + extra
    return parse_config(tomllib.loads(text), registry=registry, source="run.toml")


def issues_of(registry, extra: str = "", base: bool = True) -> dict[str, str]:
    """Parse a config that must fail; ``{key path: message}``."""
    with pytest.raises(ConfigError) as exc:
        parse(registry, extra, base)
    out = {issue.path: issue.message for issue in exc.value.issues}
    assert len(out) == len(exc.value.issues), f"two issues share a key path: {exc.value}"
    return out


def test_valid_config_selects_components_and_validates_their_options(registry):
    cfg = parse(registry)
    assert cfg.backend.name == "t_backend"
    assert type(cfg.backend.config).__name__ == "TBackendConfig"
    assert cfg.backend.config.flavour == "plain"  # the component's own default
    assert cfg.algorithm.advantage.config.scale == 1.0
    assert cfg.strategy.config is None  # t_strategy takes no options


def test_typo_in_a_key_suggests_the_right_one(registry):
    issues = issues_of(registry, "[trainer]\nprompts_per_stpe = 4\n")
    msg = issues["trainer.prompts_per_stpe"]
    assert msg.startswith("unknown key. Did you mean 'prompts_per_step'?")
    assert "Valid keys here:" in msg and "samples_per_prompt" in msg


def test_typo_in_a_section_name_suggests_the_right_one(registry):
    issues = issues_of(registry, "[trainr]\nsteps = 1\n\n[t_sectoin]\nmax_rounds = 2\n")
    assert issues["trainr"] == "unknown section [trainr]. Did you mean 'trainer'?"
    assert issues["t_sectoin"] == "unknown section [t_sectoin]. Did you mean 't_section'?"


def test_typo_in_a_component_option_is_checked_against_that_components_config_class(registry):
    text = BASE_TOML.replace('name = "t_backend"', 'name = "t_backend"\nflavor = "x"')
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(text), registry=registry)
    found = {i.path: i.message for i in exc.value.issues}
    assert found["backend.flavor"].startswith("unknown key. Did you mean 'flavour'?")
    assert "Valid keys here: flavour, tokens_per_s." in found["backend.flavor"]


def test_component_option_checks_run(registry):
    text = BASE_TOML.replace('name = "t_backend"', 'name = "t_backend"\ntokens_per_s = -1.0')
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(text), registry=registry)
    assert [(i.path, i.message) for i in exc.value.issues] == [("backend.tokens_per_s", "must be > 0, got -1.0")]


def test_options_given_to_a_component_that_takes_none(registry):
    text = BASE_TOML.replace('name = "t_strategy"', 'name = "t_strategy"\nshards = 2')
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(text), registry=registry)
    assert [str(i) for i in exc.value.issues] == ["strategy: strategy 't_strategy' takes no options, got: shards"]


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        ('[trainer]\nlr = "big"\n', "trainer.lr", "expected a number, got 'big' (str)"),
        ("[trainer]\nsteps = 1.5\n", "trainer.steps", "expected an integer, got 1.5 (float)"),
        ("[trainer]\nsteps = true\n", "trainer.steps", "expected an integer, got True (bool)"),
        ('[data]\nshuffle = "yes"\n', "data.shuffle", "expected true or false, got 'yes' (str)"),
        ("[data]\ntrain = 3\n", "data.train", "expected a list, got 3 (int)"),
        ('[data]\ntrain = ["a.jsonl", 3]\n', "data.train[1]", "expected a string, got 3 (int)"),
        (
            '[model.tiny]\narch = "qwen"\n',
            "model.tiny.arch",
            "'qwen' is not one of 'qwen2', 'llama'. Did you mean 'qwen2'?",
        ),
        ("[t_section]\nmax_rounds = 0\n", "t_section.max_rounds", "must be > 0, got 0"),
        ("[environments.t_env]\ntarget = 7\n", "environments.t_env.target", "expected a string, got 7 (int)"),
        ("[tracking.jsonl]\nnope = 1\n", "tracking.jsonl.nope", "unknown key."),
    ],
)
def test_wrong_type_names_the_key_and_the_value(registry, extra, path, message):
    issues = issues_of(registry, extra)
    assert path in issues, issues
    assert issues[path].startswith(message), issues[path]


def test_section_given_as_a_value(registry):
    text = BASE_TOML.replace("[model]", "trainer = 3\n\n[model]")
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(text), registry=registry)
    (issue,) = exc.value.issues
    assert issue.path == "trainer"
    assert "expected a table" in issue.message


def test_unknown_component_name_lists_suggests_and_mentions_failures(use_dists):
    use_dists("everything", "broken")
    from skyrl_core.plugins import build_registry

    registry = build_registry()
    text = BASE_TOML.replace('name = "t_adv"', 'name = "t_avd"')
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(text), registry=registry)
    (issue,) = exc.value.issues
    assert issue.path == "algorithm.advantage.name"
    assert issue.message.startswith("no advantage estimator named 't_avd'. Did you mean 't_adv'? Available: ")
    assert "t_adv (skyrl-test-everything)" in issue.message
    assert "Plugins that failed to load (see `skyrl plugins`): skyrl-test-broken 0.3.1" in issue.message


def test_unknown_component_names_the_distribution_that_provides_it(registry):
    issues = issues_of(registry, "[environments.text2sql]\n")
    assert (
        "'text2sql' is provided by the distribution skyrl-env-sql: `pip install skyrl-env-sql`."
        in issues["environments.text2sql"]
    )
    issues = issues_of(registry, "[dapo]\nclip_high = 0.28\n")
    assert issues["dapo"] == "unknown section [dapo]. It is provided by skyrl-algo-dapo: `pip install skyrl-algo-dapo`."


def test_unknown_tracker_and_tracker_options_without_the_tracker(registry):
    issues = issues_of(registry, '[tracking]\ntrackers = ["jsonl", "jsnol"]\n\n[tracking.t_tracker]\nkeep = 3\n')
    assert issues["tracking.trackers"].startswith("no tracker named 'jsnol'. Did you mean 'jsonl'?")
    assert issues["tracking.t_tracker"] == "options given but 't_tracker' is not listed in tracking.trackers"


def test_missing_required_section_and_key(registry):
    no_model = BASE_TOML.replace('[model]\npath = "some/model"\n', "")
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(no_model), registry=registry)
    assert [str(i) for i in exc.value.issues] == ["model: missing required section [model]."]
    no_path = BASE_TOML.replace('path = "some/model"', 'dtype = "float32"')
    with pytest.raises(ConfigError) as exc:
        parse_config(tomllib.loads(no_path), registry=registry)
    assert [str(i) for i in exc.value.issues] == ["model.path: missing required key."]


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        (
            "prompts_per_step = 8\nprompts_per_minibatch = 3",
            "3 does not divide trainer.prompts_per_step = 8; use one of [1, 2, 4, 8]",
        ),
        ("prompts_per_step = 4\nprompts_per_minibatch = 6", "6 is larger than trainer.prompts_per_step = 4"),
    ],
)
def test_batch_sizes_that_do_not_divide(registry, trainer, message):
    issues = issues_of(registry, f"[trainer]\n{trainer}\n")
    assert issues == {"trainer.prompts_per_minibatch": message}


def test_batch_plan_is_derived_in_units(registry):
    cfg = parse(
        registry, "[trainer]\nsteps = 3\nprompts_per_step = 8\nsamples_per_prompt = 4\nprompts_per_minibatch = 2\n"
    )
    plan = make_plan(cfg)
    assert (plan.sequences_per_step, plan.sequences_per_minibatch, plan.minibatches_per_step) == (32, 8, 4)
    assert (plan.optimizer_steps_per_step, plan.total_optimizer_steps) == (4, 12)


def test_every_error_of_a_file_is_reported_together(registry, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        BASE_TOML.replace('name = "t_adv"', 'name = "t_avd"')
        + '\n[trainer]\nlr = "big"\nprompts_per_stpe = 4\n\n[generator]\ntop_p = 1.5\n\n[trainr]\nsteps = 1\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path, registry=registry)
    paths = [i.path for i in exc.value.issues]
    assert sorted(paths) == sorted(
        ["trainer.lr", "trainer.prompts_per_stpe", "generator.top_p", "trainr", "algorithm.advantage.name"]
    )
    text = str(exc.value)
    assert text.startswith(f"{path}: 5 errors in the configuration\n  - ")
    assert text.count("\n  - ") == 5


def test_dotted_overrides(registry, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE_TOML)
    cfg = load_config(
        path,
        [
            "algorithm.kl.coef=0.001",
            "trainer.lr=1e-6",
            "run.name=from-cli",
            'model.tokenizer="tok dir"',
            'data.train=["a.jsonl","b.jsonl"]',
            "backend.flavour=spicy",
            "environments.t_env.target=7x",
        ],
        registry=registry,
    )
    assert cfg.algorithm.kl.coef == 0.001
    assert cfg.trainer.lr == 1e-6
    assert cfg.run.name == "from-cli"  # not TOML, so kept as a string
    assert cfg.model.tokenizer == "tok dir"
    assert cfg.data.train == ["a.jsonl", "b.jsonl"]
    assert cfg.backend.config.flavour == "spicy"
    assert cfg.environments["t_env"].target == "7x"


def test_overrides_are_validated_like_the_file(registry, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE_TOML)
    with pytest.raises(ConfigError) as exc:
        load_config(path, ["algorithm.kl.cof=0.1", "trainer.lr=fast"], registry=registry)
    found = {i.path: i.message for i in exc.value.issues}
    assert found["algorithm.kl.cof"].startswith("unknown key. Did you mean 'coef'?")
    assert found["algorithm.kl.cof"].endswith("(from the command-line override 'algorithm.kl.cof=0.1')")
    override = "(from the command-line override 'trainer.lr=fast')"
    assert found["trainer.lr"] == f"expected a number, got 'fast' (str) {override}"
    assert exc.value.source == f"{path} (with command-line overrides)"  # not blamed on the file alone


@pytest.mark.parametrize("text", ["trainer.lr", "=3", "trainer..lr=1", ".lr=1", "trainer.=1"])
def test_invalid_override_syntax(text):
    with pytest.raises(ConfigError) as exc:
        parse_override(text)
    assert "must look like section.key=value (e.g. trainer.lr=1e-6)" in str(exc.value)
    assert str(exc.value).startswith("command line: 1 error")


def test_override_below_a_value_is_an_error(registry, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(BASE_TOML)
    with pytest.raises(ConfigError) as exc:
        load_config(path, ["model.path.deeper=1"], registry=registry)
    assert "model.path: override 'model.path.deeper=1': this key is not a table" in str(exc.value)


def test_syntax_error_and_missing_file(registry, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[model\npath = 1\n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(path, registry=registry)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml", registry=registry)


def test_plugin_section_is_structured_and_available(registry):
    cfg = parse(registry, "[t_section]\nfilter_groups = true\n")
    assert cfg.sections["t_section"].filter_groups is True
    assert cfg.sections["t_section"].max_rounds == 3
    assert "t_section" in registry.names(Kind.CONFIG_SECTION)

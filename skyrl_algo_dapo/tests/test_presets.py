"""What ``[dapo]`` implies for the core tables (clip-higher, token-level loss) and what it refuses."""

from __future__ import annotations

import pytest
import skyrl_algo_dapo.plugin
from dapo_support import config
from skyrl_algo_dapo.config import DapoConfig

from skyrl_core.api import ConfigError
from skyrl_core.testing import check_plugin


def errors(toml: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        config(toml)
    return {issue.path: issue.message for issue in err.value.issues}


def test_the_plugin_is_valid():
    assert check_plugin(skyrl_algo_dapo.plugin) == []


def test_the_table_alone_is_the_whole_recipe():
    cfg = config("[dapo]\n")
    loss = cfg.algorithm.policy_loss
    assert (loss.name, loss.config.eps_low, loss.config.eps_high) == ("ppo_clip", 0.2, 0.28)
    assert cfg.algorithm.loss_reduction == "token_mean"
    assert cfg.sections["dapo"] == DapoConfig()
    section = cfg.sections["dapo"]
    assert section.dynamic_sampling and section.overlong_filtering and section.overlong_punishment


def test_without_the_table_nothing_changes():
    loss = config("").algorithm.policy_loss
    assert (loss.config.eps_low, loss.config.eps_high) == (0.2, 0.2)


def test_what_the_user_writes_wins():
    cfg = config("[dapo]\n[algorithm.policy_loss]\nname = \"ppo_clip\"\neps_high = 0.3\n")
    assert (cfg.algorithm.policy_loss.config.eps_low, cfg.algorithm.policy_loss.config.eps_high) == (0.2, 0.3)
    dual = config("[dapo]\n[algorithm.policy_loss]\nname = \"dual_clip\"\nclip_ratio_c = 5.0\n")
    assert (dual.algorithm.policy_loss.config.eps_high, dual.algorithm.policy_loss.config.clip_ratio_c) == (0.28, 5.0)
    # switched off: the core defaults stay (symmetric clipping), any reduction is accepted
    off = config(
        "[dapo]\nclip_higher = false\ntoken_level_loss = false\n[algorithm]\nloss_reduction = \"sequence_mean\"\n"
    )
    assert off.algorithm.policy_loss.config.eps_high == 0.2
    assert off.algorithm.loss_reduction == "sequence_mean"
    # another loss keeps its own clip range once clip-higher is off
    gspo = config("[dapo]\nclip_higher = false\n[algorithm.policy_loss]\nname = \"gspo\"\n")
    assert gspo.algorithm.policy_loss.config.eps_high == 4e-4


def test_inconsistent_core_settings_are_errors_naming_the_way_out():
    found = errors(
        "[dapo]\noverlong_buffer_tokens = 300\n"
        "[algorithm]\nloss_reduction = \"seq_mean_token_sum_norm\"\n"
        "[algorithm.policy_loss]\nname = \"gspo\"\n"
        "[trainer]\nsamples_per_prompt = 1\n"
    )
    assert set(found) == {
        "algorithm.policy_loss.name",
        "algorithm.loss_reduction",
        "dapo.dynamic_sampling",
        "dapo.overlong_buffer_tokens",
    }
    assert "got 'gspo'" in found["algorithm.policy_loss.name"]
    assert "dapo.clip_higher = false" in found["algorithm.policy_loss.name"]
    assert "dapo.token_level_loss = false" in found["algorithm.loss_reduction"]
    assert "trainer.samples_per_prompt = 1" in found["dapo.dynamic_sampling"]
    assert "(300 tokens)" in found["dapo.overlong_buffer_tokens"]
    assert "(256 tokens" in found["dapo.overlong_buffer_tokens"]

    symmetric = errors("[dapo]\n[algorithm.policy_loss]\neps_low = 0.3\neps_high = 0.3\n")
    assert list(symmetric) == ["algorithm.policy_loss.eps_high"]
    assert "eps_high = 0.3 and eps_low = 0.3" in symmetric["algorithm.policy_loss.eps_high"]


def test_dapo_option_errors_are_reported_with_their_key_path():
    found = errors("[dapo]\nmax_sampling_rounds = 0\nfilter_on = \"rewards\"\nclip_highr = true\n")
    assert set(found) == {"dapo.max_sampling_rounds", "dapo.filter_on", "dapo.clip_highr"}
    assert "Did you mean 'reward'?" in found["dapo.filter_on"]
    assert "Did you mean 'clip_higher'?" in found["dapo.clip_highr"]

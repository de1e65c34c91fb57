"""``skyrl config import-skyrl``: SkyRL-Train's example configs translate into TOML files that
``skyrl config validate`` accepts, the report names each translation and difference, keys that
cannot be placed fail with exit 2, and unknown-key errors name SkyRL's keys.

The real command runs in this process with the installed plugins (skyrl-gym itself is not
installed here, so these use ``--env native``; the skyrl-gym plugin's CI stage translates with the
default ``--env skyrlgym`` and trains on the result:
plugins/skyrl_env_skyrlgym/tests/test_skyrlgym_import.py).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomllib
from skyrl_scripts import DAPO, GSM8K_GRPO, PPO_CRITIC, SQL_MULTI_TURN, filled

from skyrl_core.config.skyrl_keys import BY_KEY, TABLE, skyrl_hint
from skyrl_core.testing import run_skyrl


def write_rows(path: Path, n: int, env_class: str = "gsm8k") -> Path:
    rows = [{"prompt": [{"role": "user", "content": f"question {i}"}], "env_class": env_class,
             "reward_spec": {"method": "rule", "ground_truth": str(i)}} for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def data(tmp_path):
    """A SkyRL data folder: 2,048 training rows (two batches of 1,024), 16 validation rows."""
    folder = tmp_path / "data"
    write_rows(folder / "train.parquet", 2048)
    write_rows(folder / "validation.parquet", 16)
    return folder


def import_skyrl(tmp_path: Path, capsys, *args: str) -> tuple[int, str, str, dict | None]:
    """Run the command; ``(exit code, stdout, stderr, the written TOML or None)``."""
    out = tmp_path / "run.toml"
    code = run_skyrl(["config", "import-skyrl", "--out", str(out), *args])
    captured = capsys.readouterr()
    doc = tomllib.loads(out.read_text()) if out.exists() else None
    return code, captured.out, captured.err, doc


def validates(tmp_path: Path, capsys) -> None:
    assert run_skyrl(["config", "validate", str(tmp_path / "run.toml")]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_gsm8k_grpo(tmp_path, capsys, data):
    code, out, err, doc = import_skyrl(tmp_path, capsys, "--env", "native", *filled(GSM8K_GRPO, data))
    assert code == 0, err
    validates(tmp_path, capsys)
    # batch sizes: prompts on both sides; micro-batches: sequences per GPU -> tokens per rank
    assert doc["trainer"]["prompts_per_step"] == 1024 and doc["trainer"]["prompts_per_minibatch"] == 256
    assert doc["trainer"]["samples_per_prompt"] == 5
    assert doc["trainer"]["micro_batch_tokens"] == 64 * (512 + 1024)
    assert doc["strategy"] == {"name": "fsdp2", "reshard_after_forward": True, "forward_micro_batch_tokens": 64 * 1536}
    assert doc["trainer"]["steps"] == 20 * (2048 // 1024)  # epochs over the rows that were counted
    # SkyRL-train's reductions and KL, set explicitly
    assert doc["algorithm"]["loss_reduction"] == "token_mean_legacy"
    assert doc["algorithm"]["legacy_micro_batch_sequences"] == 64
    assert doc["algorithm"]["empty_sequences"] == "count"
    assert (doc["algorithm"]["kl"]["mode"], doc["algorithm"]["kl"]["coef"]) == ("loss", 0.001)
    assert doc["algorithm"]["kl"]["reduction"] == "sequence_mean"
    assert doc["algorithm"]["advantage"] == {"name": "grpo", "singleton_advantage": "score", "norm_by_std": True}
    assert doc["runtime"] == {"colocate": True, "mode": "ray", "train_gpus": 4, "inference_gpus": 0}
    assert doc["data"]["train"] == [str(data / "train.parquet")]
    assert doc["data"]["default_env_class"] == "gsm8k"
    assert doc["backend"]["name"] == "vllm" and doc["backend"]["gpu_memory_utilization"] == 0.8
    assert doc["tracking"] == {"trackers": ["console", "jsonl", "wandb"], "wandb": {"project": "gsm8k"}}
    # the report: translations (SkyRL key = value -> ours), differences, ignored keys
    assert "generator.n_samples_per_prompt = 5  ->  trainer.samples_per_prompt = 5" in out
    assert "trainer.train_batch_size = 1024  ->  trainer.prompts_per_step = 1024" in out
    assert "trainer.micro_train_batch_size_per_gpu = 64  ->  trainer.micro_batch_tokens = 98304" in out
    assert "trainer.algorithm.kl_loss_coef = 0.001  (SkyRL default)  ->  algorithm.kl.coef = 0.001" in out
    differences = out.split("differences:")[1].split("ignored")[0]
    assert "SkyRL counts sequences per GPU, ours tokens per rank: 64 x 1536" in differences
    assert "KL loss: on by default in SkyRL, off here" in differences
    assert "'token_mean_legacy' with legacy_micro_batch_sequences" in differences
    assert "count prompts" in differences
    assert "skyrl's own 'gsm8k' (--env native)" in differences
    assert "trainer.placement.ref_num_gpus_per_node = 4: the reference model and the critic run on the policy's" in out
    assert f"wrote {tmp_path / 'run.toml'}" in out


def test_sql_multi_turn(tmp_path, capsys, data):
    code, out, err, doc = import_skyrl(
        tmp_path, capsys, "--env", "native", "--set", "trainer.steps=90", *filled(SQL_MULTI_TURN, data)
    )
    assert code == 0, err
    validates(tmp_path, capsys)
    gen = doc["generator"]
    assert (gen["max_turns"], gen["max_new_tokens"], gen["max_total_tokens"]) == (6, 3000, 29000 + 3000)
    assert gen["stop"] == ["</sql>", "</solution>"] and gen["temperature"] == 0.6 and gen["top_p"] == 0.95
    assert doc["environments"] == {"text2sql": {"db_root": f"{data}/db_files/data"}}
    assert doc["algorithm"]["kl"]["mode"] == "none"
    assert doc["trainer"]["steps"] == 90 and doc["trainer"]["grad_clip"] == 0.5
    assert doc["trainer"]["micro_batch_tokens"] == 32000
    assert doc["backend"]["tensor_parallel_size"] == 4
    assert "trainer.epochs = 30: trainer.steps is given with --set" in out
    assert "multi-turn length: SkyRL stops when the input reaches generator.max_input_length" in out
    assert "a turn ended by a stop string: SkyRL appends the EOS token" in out
    assert "our own overrides (--set), applied after the translation:\n  trainer.steps=90" in out


def test_sql_without_the_conversation_format_fails(tmp_path, capsys, data):
    overrides = [o for o in filled(SQL_MULTI_TURN, data) if "use_conversation_multi_turn" not in o]
    code, _, err, doc = import_skyrl(tmp_path, capsys, "--env", "native", "--set", "trainer.steps=9",
                                     *overrides, "generator.use_conversation_multi_turn=false")
    assert code == 2 and doc is None
    assert "generator.use_conversation_multi_turn = false: skyrl always writes a multi-turn episode as a " \
           "conversation" in err


def test_dapo(tmp_path, capsys, data):
    code, out, err, doc = import_skyrl(tmp_path, capsys, "--env", "native", *filled(DAPO, data))
    assert code == 0, err
    validates(tmp_path, capsys)
    assert doc["algorithm"]["policy_loss"] == {"name": "dual_clip", "eps_low": 0.2, "eps_high": 0.28,
                                               "clip_ratio_c": 10.0}
    assert doc["algorithm"]["kl"]["mode"] == "none"
    assert doc["dapo"] == {
        "clip_higher": False, "token_level_loss": False, "dynamic_sampling": True, "max_sampling_rounds": 30,
        "filter_on": "reward", "overlong_filtering": True, "overlong_punishment": True,
        "overlong_max_tokens": 1024, "overlong_buffer_tokens": 512, "overlong_penalty_factor": 1.0,
    }
    assert doc["trainer"]["weight_decay"] == 0.1
    assert doc["eval"]["top_p"] == 0.7 and doc["eval"]["before_train"] is False
    assert "+trainer.algorithm.overlong_buffer.len" not in out  # reported under its key, without the '+'
    assert "trainer.algorithm.dynamic_sampling.type = \"filter\"  ->  dapo.clip_higher = false" in out
    assert "[dapo] turns every DAPO piece on by default" in out


def test_ppo_with_a_critic(tmp_path, capsys, data):
    code, out, err, doc = import_skyrl(tmp_path, capsys, "--env", "native", *filled(PPO_CRITIC, data))
    assert code == 0, err
    validates(tmp_path, capsys)
    assert doc["algorithm"]["advantage"] == {"name": "gae", "whiten_variance": "bessel", "lam": 1.0, "gamma": 1.0}
    assert doc["algorithm"]["value_reduction"] == "sequence_mean"
    assert "SkyRL-train divides by the Bessel-corrected variance (n - 1)" in out
    assert doc["model"]["critic_path"] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert doc["strategy"]["critic_lr"] == 5e-6  # SkyRL's critic default, not the policy's
    assert doc["algorithm"]["value_clip"] == 0.2
    assert "the critic's learning rate is its own here too" in out
    assert "trainer.critic.optimizer_config.lr = 5e-06  (SkyRL default)  ->  strategy.critic_lr = 5e-06" in out


def test_a_yaml_file_with_interpolations_plus_and_tilde(tmp_path, capsys, data, monkeypatch):
    monkeypatch.setenv("SKYRL_TEST_DATA", str(data))
    (tmp_path / "skyrl.yaml").write_text(
        "defaults:\n  - _self_\n"
        "data:\n  train_data: ['${oc.env:SKYRL_TEST_DATA}/train.parquet']\n"
        "trainer:\n  train_batch_size: 512\n  policy_mini_batch_size: 128\n  algorithm:\n"
        "    loss_reduction: seq_mean_token_sum_norm\n    grpo_norm_by_std: false\n"
        "generator:\n  max_input_length: ${trainer.max_prompt_length}\n"
        "  sampling_params:\n    max_generate_length: 256\n  chat_template_kwargs:\n    enable_thinking: false\n"
    )
    code, out, err, doc = import_skyrl(
        tmp_path, capsys, "--env", "native", "--yaml", str(tmp_path / "skyrl.yaml"),
        "trainer.epochs=2", "trainer.train_batch_size=1024", "~trainer.policy_mini_batch_size",
        "+generator.chat_template_kwargs.custom=1",
    )
    assert code == 0, err
    validates(tmp_path, capsys)
    assert doc["data"]["train"] == [f"{data}/train.parquet"]
    assert doc["trainer"]["steps"] == 4 and doc["trainer"]["prompts_per_step"] == 1024  # the override wins
    assert "prompts_per_minibatch" not in doc["trainer"]  # ~key: our default (all prompts of the step)
    assert doc["algorithm"]["loss_reduction"] == "seq_mean_token_sum_norm"
    assert doc["algorithm"]["loss_norm_tokens"] == 512 + 256
    assert doc["algorithm"]["advantage"]["norm_by_std"] is False
    assert doc["model"]["chat_template_kwargs"] == {"enable_thinking": False, "custom": 1}
    assert "trainer.train_batch_size = 1024  ->  trainer.prompts_per_step = 1024" in out
    assert "removed with ~ (our default applies):\n  trainer.policy_mini_batch_size" in out


def test_keys_that_cannot_be_placed_fail_with_exit_2_naming_each(tmp_path, capsys, data):
    code, _, err, doc = import_skyrl(
        tmp_path, capsys, "--env", "native", *filled(GSM8K_GRPO, data),
        "trainer.strategy=megatron", "generator.sampling_params.repetition_penalty=1.1",
        "trainer.algorithm.advantage_estimator=maxrl", "trainer.algorithm.use_kl_in_reward=true",
        "trainer.algoritm.gamma=0.9", "environment.env_class=no_such_env",
    )
    assert code == 2 and doc is None
    assert "6 SkyRL keys cannot be placed in a skyrl config (nothing was written)" in err
    for text in (
        'trainer.strategy = "megatron": strategy \'megatron\' is not available here',
        "generator.sampling_params.repetition_penalty = 1.1: a repetition penalty is not available",
        "trainer.algorithm.advantage_estimator = \"maxrl\": advantage estimator 'maxrl' is not available here",
        "trainer.algorithm.use_kl_loss = true: use_kl_loss and use_kl_in_reward are both true",
        "trainer.algoritm.gamma: not a SkyRL-Train config key that this translator knows",
        "environment.env_class = \"no_such_env\": --env native: skyrl has no environment named 'no_such_env'",
    ):
        assert text in err, text


def test_epochs_need_the_row_count_or_steps(tmp_path, capsys):
    code, _, err, _ = import_skyrl(tmp_path, capsys, "--env", "native", "data.train_data=['/nowhere/train.parquet']")
    assert code == 2
    assert "trainer.epochs = 1: epochs become trainer.steps" in err and "pass --set trainer.steps=N" in err
    code, _, err, doc = import_skyrl(tmp_path, capsys, "--env", "native", "--set", "trainer.steps=3",
                                     "data.train_data=['/nowhere/train.parquet']")
    assert code == 0, err
    assert doc["trainer"]["steps"] == 3


def test_the_default_environment_is_skyrl_gyms_through_the_adapter(tmp_path, capsys, data):
    """Without skyrl-gym installed the result does not validate: the command says so and writes
    nothing, unless --no-validate."""
    args = [*filled(SQL_MULTI_TURN, data), "--set", "trainer.steps=9"]
    code, _, err, doc = import_skyrl(tmp_path, capsys, *args)
    assert code == 2 and doc is None
    assert "does not validate with the installed plugins" in err and "--no-validate" in err
    code, out, err, doc = import_skyrl(tmp_path, capsys, "--no-validate", *args)
    assert code == 0, err
    qualified = "skyrl-env-skyrlgym:text2sql"
    assert doc["data"]["default_env_class"] == qualified and doc["data"]["env_map"] == {"text2sql": qualified}
    assert doc["environments"] == {qualified: {"env_config": {"db_path": f"{data}/db_files/data"}}}
    assert f"skyrl-gym's own 'text2sql' through the adapter plugin ({qualified})" in out
    assert "(not validated: --no-validate)" in out


def test_the_output_is_written_atomically(tmp_path, capsys, data):
    out = tmp_path / "run.toml"
    out.write_text("# the user's file\n")
    code, _, _, _ = import_skyrl(tmp_path, capsys, "--env", "native", "trainer.strategy=megatron")
    assert code == 2 and out.read_text() == "# the user's file\n"  # a failure leaves it alone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run.toml"]  # no temporary file left


def test_unknown_keys_name_skyrls_keys(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(
        '[model]\npath = "m"\n\n[generator]\nn_samples_per_prompt = 5\n\n[trainer.policy.model]\npath = "x"\n\n'
        '[environment]\nenv_class = "gsm8k"\n'
    )
    code = run_skyrl(["config", "validate", str(tmp_path / "run.toml"), "trainer.train_batch_size=8"])
    err = capsys.readouterr().err
    assert code == 2
    assert ("generator.n_samples_per_prompt: unknown key. `generator.n_samples_per_prompt` is SkyRL's name: use "
            "`[trainer] samples_per_prompt`. `skyrl config import-skyrl` translates a whole SkyRL config.") in err
    assert "trainer.policy: unknown key. `trainer.policy.model.path` is SkyRL's name: use `[model] path`" in err
    assert "environment: unknown section [environment]. `environment.env_class` is SkyRL's name: use " \
           "`[data] default_env_class`" in err
    assert ("trainer.train_batch_size: unknown key. `trainer.train_batch_size` is SkyRL's name: use `[trainer] "
            "prompts_per_step`") in err and "(from the command-line override 'trainer.train_batch_size=8')" in err
    # an ordinary typo still gets "did you mean"
    assert skyrl_hint("trainer.promts_per_step") == ""


def test_every_table_entry_is_well_formed(registry_all):
    assert len(BY_KEY) == len(TABLE), "a SkyRL key is listed twice"
    for entry in TABLE:
        assert entry.note, entry.key
        for ours in entry.ours:
            assert not ours.startswith(("trainer.policy", "generator.sampling")), ours
    assert skyrl_hint("generator.sampling_params", {"temperature": 0.6}).startswith(
        "`generator.sampling_params.temperature` is SkyRL's name: use `[generator] temperature`")


@pytest.fixture
def registry_all():
    from skyrl_core.plugins import build_registry

    return build_registry()

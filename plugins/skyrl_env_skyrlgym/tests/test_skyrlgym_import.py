"""A SkyRL user's GSM8K command line, translated by ``skyrl config import-skyrl`` with its default
``--env skyrlgym``, trains on skyrl-gym's own gsm8k through this adapter: two GRPO steps on CPU with
a tiny local model. The translation names only SkyRL's keys, apart from ``--backend native`` (no GPU
engine here) and the run folder; the two steps come from SkyRL's epochs and batch size.
"""

from __future__ import annotations

from pathlib import Path

import tomllib
from skyrlgym_support import DIST, gsm8k_rows, needs_skyrl_gym, read_jsonl, write_jsonl

from skyrl_core.testing import read_metrics, run_skyrl

pytestmark = needs_skyrl_gym


def gsm8k_command(data: Path, model: Path) -> list[str]:
    """examples/gsm8k/run_gsm8k.sh's overrides, scaled down to a CPU: a tiny model, 8 rows."""
    return [
        f"data.train_data=['{data}/train.jsonl']",
        f"data.val_data=['{data}/train.jsonl']",
        "trainer.algorithm.advantage_estimator=grpo",
        f"trainer.policy.model.path={model}",
        "trainer.placement.colocate_all=true",
        "trainer.strategy=fsdp2",
        "trainer.placement.policy_num_gpus_per_node=1",
        "generator.num_inference_engines=1",
        "generator.inference_engine_tensor_parallel_size=1",
        "trainer.epochs=1",
        "trainer.eval_before_train=true",
        "trainer.eval_interval=5",
        "trainer.update_epochs_per_batch=1",
        "trainer.train_batch_size=4",
        "trainer.policy_mini_batch_size=2",
        "trainer.micro_forward_batch_size_per_gpu=4",
        "trainer.micro_train_batch_size_per_gpu=2",
        "trainer.ckpt_interval=10",
        "trainer.max_prompt_length=256",
        "generator.sampling_params.max_generate_length=16",
        "trainer.policy.optimizer_config.lr=1.0e-4",
        "trainer.algorithm.use_kl_loss=true",
        "trainer.bf16=false",
        "generator.model_dtype=float32",
        "generator.backend=vllm",
        "environment.env_class=gsm8k",
        "generator.n_samples_per_prompt=2",
        "trainer.logger=console",
        "trainer.run_name=gsm8k_test",
        "trainer.resume_mode=null",
    ]


def test_a_translated_skyrl_gsm8k_command_trains_on_skyrl_gyms_gsm8k(gym_model_dir, tmp_path, capsys):
    rows = gsm8k_rows()  # env_class "gsm8k", as SkyRL's preparation writes it
    write_jsonl(tmp_path / "train.jsonl", rows)
    out = tmp_path / "run.toml"
    code = run_skyrl(["config", "import-skyrl", "--out", str(out), "--backend", "native",
                      "--set", f"run.dir={tmp_path / 'run'}", *gsm8k_command(tmp_path, gym_model_dir)])
    report = capsys.readouterr()
    assert code == 0, report.err
    assert f"skyrl-gym's own 'gsm8k' through the adapter plugin ({DIST}:gsm8k)" in report.out
    assert "trainer.epochs = 1  ->  trainer.steps = 2" in report.out  # 1 x (8 rows // 4 prompts per step)
    doc = tomllib.loads(out.read_text())
    assert doc["data"]["env_map"] == {"gsm8k": f"{DIST}:gsm8k"}
    assert doc["data"]["default_env_class"] == f"{DIST}:gsm8k"
    assert doc["backend"] == {"name": "native"}
    assert run_skyrl(["config", "validate", str(out)]) == 0

    assert run_skyrl(["train", str(out)]) == 0
    run = tmp_path / "run"
    metrics = read_metrics(run)  # by step
    assert sorted(k for k in metrics if k > 0) == [1, 2]
    steps = [metrics[1], metrics[2]]
    for m in steps:
        assert m["rollout/env_errors"] == 0.0
        assert f"reward/{DIST}:gsm8k/mean" in m  # scored by skyrl-gym's gsm8k
        assert m["policy/skipped"] == 0.0 and "policy/loss" in m  # an update ran
    samples = [s for e in sorted((run / "eval").iterdir()) for s in read_jsonl(e / "samples.jsonl")]
    assert samples and {s["env_class"] for s in samples} == {f"{DIST}:gsm8k"}


def test_the_sql_example_translates_with_skyrl_gyms_text2sql_options(tmp_path, capsys):
    """SkyRL's text-to-SQL settings: the skyrl-gym options land in the adapter's env_config, which
    skyrl-gym's own Text2SQLEnvConfig validates."""
    out = tmp_path / "run.toml"
    code = run_skyrl([
        "config", "import-skyrl", "--out", str(out), "--backend", "native", "--set", "trainer.steps=9",
        "environment.env_class=text2sql", "environment.skyrl_gym.text2sql.db_path=/data/sql/db_files/data",
        "generator.max_turns=6", 'generator.sampling_params.stop=["</sql>", "</solution>"]',
        'generator.eval_sampling_params.stop=["</sql>", "</solution>"]', "trainer.logger=console",
    ])
    report = capsys.readouterr()
    assert code == 0, report.err
    doc = tomllib.loads(out.read_text())
    assert doc["environments"] == {f"{DIST}:text2sql": {"env_config": {"db_path": "/data/sql/db_files/data"}}}
    assert doc["data"]["env_map"] == {"text2sql": f"{DIST}:text2sql"}
    code = run_skyrl(["config", "import-skyrl", "--out", str(out), "--backend", "native", "--set", "trainer.steps=9",
                      "environment.env_class=text2sql", "environment.skyrl_gym.text2sql.db_pth=/x",
                      "trainer.logger=console"])
    err = capsys.readouterr().err
    assert code == 2 and "Key 'db_pth' not in 'Text2SQLEnvConfig'" in err

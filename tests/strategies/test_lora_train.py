"""`skyrl train examples/lora/cpu_smoke.toml` end to end on CPU, shrunk to 2 steps.

Covers the LoRA path through the whole loop: a LoRA warm start exported merged, GRPO with
a KL term on the base model, merged weight sync into the native backend, adapter-only
checkpoints, a merged export at the end, `skyrl export` of the adapter, and a resume.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from skyrl_core.cli import main
from skyrl_core.strategies import lora
from skyrl_core.strategies.checkpoint_files import (
    POLICY_OPTIMIZER,
    POLICY_WEIGHTS,
    REF_WEIGHTS,
    RNG_STATE,
    STRATEGY_STATE,
)

pytest.importorskip("peft")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lora" / "cpu_smoke.toml"
SMALL = [
    "trainer.prompts_per_step=2",
    "trainer.samples_per_prompt=4",
    "warm_start.steps=3",
    "warm_start.batch_size=8",
    "model.tiny.hidden_size=64",
    "model.tiny.layers=2",
    "model.tiny.intermediate_size=128",
    "eval.max_rows=4",
    "eval.before_train=false",
    "checkpoint.every=1",
    "checkpoint.keep_last=3",
    "tracking.trackers=['jsonl']",
    "tracking.plot=false",
    "algorithm.entropy_coef=0.01",  # a gradient even when every sample of a group gets the same reward
]


def merged_by_peft(base_dir: Path, adapter_file: Path) -> dict[str, torch.Tensor]:
    """peft's own merge of a checkpoint's adapter into the base model (the oracle)."""
    from peft import get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from skyrl_core.config.loader import load_config

    cfg = load_config(str(EXAMPLE), SMALL)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = get_peft_model(base, lora.peft_config(cfg.model.lora))
    result = set_peft_model_state_dict(model, safetensors.torch.load_file(str(adapter_file)))
    assert not result.unexpected_keys
    return model.merge_and_unload().state_dict()


@pytest.mark.slow
def test_two_step_lora_train_export_and_resume(tmp_path, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", str(EXAMPLE), "trainer.steps=2", *SMALL]) == 0

    run_dir = tmp_path / "runs" / "lora-smoke"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[0]["startup/logprob_diff_mean"] < 1e-3  # the engine runs exactly what the trainer scores
    for row in rows[1:]:
        assert row["policy/skipped"] == 0.0
        assert row["policy/kl_ref"] >= 0.0  # the reference pass (adapters off) ran

    # The warm start trained adapters and exported them merged: the RL phase's base model.
    warm = run_dir / "warm_start" / "model"
    assert (warm / "config.json").is_file() and not (warm / "adapter_config.json").exists()
    tiny = safetensors.torch.load_file(str(tmp_path / "runs" / "lora-smoke" / "tiny-model" / "model.safetensors"))
    warm_weights = safetensors.torch.load_file(str(warm / "model.safetensors"))
    assert not torch.equal(warm_weights["model.layers.0.self_attn.q_proj.weight"],
                           tiny["model.layers.0.self_attn.q_proj.weight"])

    # Checkpoints: the adapter + optimizer state, never the base weights.
    ckpt = run_dir / "checkpoints" / "step-000002"
    files = {p.name for p in ckpt.iterdir()}
    assert {lora.ADAPTER_WEIGHTS, POLICY_OPTIMIZER, RNG_STATE} <= files
    assert POLICY_WEIGHTS not in files and REF_WEIGHTS not in files
    assert json.loads((ckpt / STRATEGY_STATE).read_text())["lora"]["rank"] == 32
    adapter_bytes = (ckpt / lora.ADAPTER_WEIGHTS).stat().st_size
    assert adapter_bytes < (warm / "model.safetensors").stat().st_size

    # The final export is a plain merged model: base + the last checkpoint's adapter.
    export = AutoModelForCausalLM.from_pretrained(run_dir / "export", dtype=torch.float32).state_dict()
    oracle = merged_by_peft(warm, ckpt / lora.ADAPTER_WEIGHTS)
    assert set(export) == set(oracle)
    for name, tensor in oracle.items():
        torch.testing.assert_close(export[name], tensor, rtol=0, atol=1e-6)
    up = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(export[up], warm_weights[up])  # RL moved the adapters

    # `skyrl export` of an earlier checkpoint as a peft adapter.
    out = tmp_path / "adapter-step1"
    step1 = run_dir / "checkpoints" / "step-000001"
    code = main(["export", str(EXAMPLE), *SMALL, "model.lora.export=adapter", "--checkpoint", str(step1),
                 "--out", str(out)])
    assert code == 0
    exported = safetensors.torch.load_file(str(out / "adapter_model.safetensors"))
    saved = safetensors.torch.load_file(str(step1 / lora.ADAPTER_WEIGHTS))
    assert exported.keys() == saved.keys()
    assert all(torch.equal(exported[k], saved[k]) for k in saved)
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 32

    # Resume from step 2 and train one more step.
    assert main(["train", str(EXAMPLE), "trainer.steps=3", *SMALL]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows][-1] == 3
    after = safetensors.torch.load_file(str(run_dir / "checkpoints" / "step-000003" / lora.ADAPTER_WEIGHTS))
    assert after.keys() == saved.keys() and any(not torch.equal(after[k], saved[k]) for k in saved)

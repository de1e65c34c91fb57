"""``bench/fsdp2_scaling.py``'s scaling summary (issue 25: weak and strong scaling, loss parity), and the
parameter count it computes MFU from. The bench itself runs on GPUs (bench/run_fsdp2_gpu.sh); on the
CPU its ``train`` phase runs with gloo (`--shape tiny`), which this test does not repeat (Ray, ~45 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyrl_core.testing.helpers import module_from_file

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    with module_from_file(REPO / "bench" / "fsdp2_scaling.py", "fsdp2_scaling") as module:
        yield module


def test_weak_and_strong_scaling_and_parity_against_the_first_size(bench):
    rows = [
        {"world_size": 1, "tok_s_per_gpu": 1000.0, "strong_step_s": 8.0, "parity_loss": 2.0, "parity_grad_norm": 4.0},
        {"world_size": 2, "tok_s_per_gpu": 950.0, "strong_step_s": 5.0, "parity_loss": 2.001, "parity_grad_norm": 4.2,
         "mfu_989": 0.3},
        {"world_size": 8, "tok_s_per_gpu": 900.0, "strong_step_s": 2.0, "parity_loss": 2.0, "parity_grad_norm": 4.0},
    ]
    out = bench.scaling_summary(rows)
    assert out["what"] == "scaling" and out["base_world_size"] == 1
    two, eight = out["sizes"]["2"], out["sizes"]["8"]
    assert two["weak"] == pytest.approx(0.95) and eight["weak"] == pytest.approx(0.9)
    assert two["strong"] == pytest.approx(8.0 / (2 * 5.0)) and eight["strong"] == pytest.approx(8.0 / (8 * 2.0))
    assert two["loss_diff"] == pytest.approx(0.001) and two["grad_norm_rel_diff"] == pytest.approx(0.05)
    assert two["mfu_989"] == 0.3 and eight["mfu_989"] is None
    # a first size above 1: efficiencies are relative to it
    assert bench.scaling_summary(rows[1:])["sizes"]["8"]["strong"] == pytest.approx(5.0 / (4 * 2.0))


def test_param_count_reads_the_folder_without_loading_weights(bench, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    want = sum(p.numel() for p in model.parameters())
    assert bench.param_count(str(tiny_model_dir)) == want

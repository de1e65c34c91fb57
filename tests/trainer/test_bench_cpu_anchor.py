"""``bench/cpu_grpo_vs_trl.py`` (issue 21): its config validates with its environment, its prompts are
exactly the anchor's length, and two steps of the real loop on it generate exactly 64 tokens per
sample (``[generator] ignore_eos``). Timings are the bench's business, never asserted here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyrl_core.testing.helpers import module_from_file

REPO = Path(__file__).resolve().parents[2]
ANCHOR_TOK = REPO.parent / "shared" / "tools" / "anchors" / "trl_anchor" / "tok"


@pytest.fixture(scope="module")
def bench():
    with module_from_file(REPO / "bench" / "cpu_grpo_vs_trl.py", "cpu_grpo_vs_trl") as module:
        yield module


def test_the_config_validates_with_the_bench_environment(bench):
    from skyrl_core.config.loader import load_config
    from skyrl_core.testing.helpers import fresh_registry

    cfg = load_config(bench.CONFIG, [], fresh_registry(bench))
    assert cfg.generator.ignore_eos and cfg.generator.max_new_tokens == bench.NEW_TOKENS
    assert (cfg.trainer.prompts_per_step, cfg.trainer.samples_per_prompt) == (bench.PROMPTS, bench.SAMPLES)
    assert cfg.algorithm.kl.mode == "none" and cfg.model.dtype == "float32"


@pytest.mark.slow
@pytest.mark.skipif(not ANCHOR_TOK.is_dir(), reason="the TRL anchor's tokenizer (shared/) is not beside the checkout")
def test_two_steps_of_the_real_loop_on_the_anchor_shape(bench, tmp_path):
    bench.build_model(tmp_path / "model", ANCHOR_TOK)
    ids = bench.write_prompts(tmp_path / "prompts.jsonl", tmp_path / "model")
    assert {len(i) for i in ids} == {bench.PROMPT_TOKENS}
    bench.run_ours_child(tmp_path, 2, [])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["step"] >= 1]
    assert len(steps) == 2
    for r in steps:
        assert r["rollout/prompt_length/mean"] == bench.PROMPT_TOKENS
        assert r["rollout/response_length/mean"] == r["rollout/response_length/max"] == bench.NEW_TOKENS
        assert "timing/generate" in r and "timing/update" in r

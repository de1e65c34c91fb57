"""``[model] attn_implementation = "sdpa"`` on the CPU loads as ``skyrl_sdpa`` (grouped-query attention
inside the SDPA kernel, ``skyrl_core.models.attention``): same logits and gradients as transformers'
own ``"sdpa"`` with masks (padding, a shared prompt's offset causal mask) and without, and nothing of
it reaches a saved checkpoint."""

from __future__ import annotations

import inspect
import json

import attrs
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from skyrl_core.models import attention
from skyrl_core.models.loading import load_causal_lm


def _logits_and_grads(model, **inputs):
    model.train()
    model.zero_grad()
    logits = model(**inputs).logits
    (logits.float().pow(2).mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.fixture
def pair(tiny_model_cfg):
    ours = load_causal_lm(tiny_model_cfg)
    theirs = AutoModelForCausalLM.from_pretrained(tiny_model_cfg.path, attn_implementation="sdpa",
                                                  dtype=torch.float32)
    return ours, theirs


def test_cpu_sdpa_loads_as_the_gqa_kernel_and_matches_transformers(pair, monkeypatch):
    ours, theirs = pair
    assert ours.config._attn_implementation == attention.NAME
    assert ours.config.num_key_value_heads < ours.config.num_attention_heads  # the fixture is a GQA model
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((kwargs.get("enable_gqa", False), kwargs.get("attn_mask") is not None, args[1].shape[1]))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, ours.config.vocab_size, (3, 12), generator=gen)
    padded = torch.ones_like(ids)
    padded[0, :4] = 0
    # A batch with padding (a mask), one without (transformers' causal path), and queries that see a
    # 5-token prefix through a cache (what a shared prompt does): an offset causal mask.
    cases = [dict(input_ids=ids, attention_mask=padded), dict(input_ids=ids)]
    for inputs in cases:
        seen.clear()
        got, got_grads = _logits_and_grads(ours, **inputs)
        assert seen and all(gqa and kv == ours.config.num_key_value_heads for gqa, _, kv in seen)
        want, want_grads = _logits_and_grads(theirs, **inputs)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        assert got_grads.keys() == want_grads.keys()
        for name in want_grads:
            torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    seen.clear()
    with torch.no_grad():
        out = {}
        for name, model in (("ours", ours), ("theirs", theirs)):
            model.eval()
            prefix = model(input_ids=ids[:, :5], use_cache=True)
            keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
            out[name] = model(input_ids=ids[:, 5:], **{keyword: prefix.past_key_values}).logits
    assert any(gqa and masked for gqa, masked, _ in seen)
    torch.testing.assert_close(out["ours"], out["theirs"], rtol=0, atol=1e-6)


def test_other_implementations_and_devices_are_left_alone(tiny_model_cfg, tmp_path):
    assert attention.implementation("eager", torch.device("cpu")) == "eager"
    assert attention.implementation("sdpa", torch.device("cuda")) == "sdpa"
    eager = load_causal_lm(attrs.evolve(tiny_model_cfg, attn_implementation="eager"))
    assert eager.config._attn_implementation == "eager"
    ours = load_causal_lm(tiny_model_cfg)
    ours.save_pretrained(tmp_path / "export")
    saved = json.loads((tmp_path / "export" / "config.json").read_text())
    assert attention.NAME not in json.dumps(saved)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export")  # plain transformers reads it
    assert reloaded.config._attn_implementation in ("sdpa", "eager")

"""Helpers for testing LoRA weight sync against any backend (core tests and backend plugins).

The oracle is independent of skyrl's own LoRA code: an exported adapter is loaded by peft
onto a fresh copy of the base model and merged with ``merge_and_unload``; greedy tokens and
log-probs are computed from that model one step at a time.

::

    strategy.train_step(pg_batch(0), pg_loss)              # move the adapters
    lora.export_adapter(strategy.peft, adapter_dir, None)
    assert_same_outputs(engine_greedy(backend), greedy_oracle(model_dir, adapter_dir))
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from skyrl_core.protocols.strategy import TrainBatch

#: Prompts (token ids < 60, so any tiny test vocabulary holds them) and the greedy length.
PROMPTS: tuple[tuple[int, ...], ...] = ((5, 17, 3, 40), (8, 2), (30, 31, 32, 33, 34, 35))
NEW_TOKENS = 8

Outputs = list[tuple[list[int], list[float]]]


def pg_batch(seed: int) -> TrainBatch:
    """Four random sequences (token ids < 60) with random per-sequence advantages."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 60, (int(n),), generator=g).tolist() for n in (3, 5, 2, 4)]
    responses = [torch.randint(0, 60, (int(n),), generator=g).tolist() for n in (4, 2, 6, 3)]
    mask = torch.zeros(4, 6)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
    return TrainBatch(prompts, responses, {"loss_mask": mask, "advantages": torch.randn(4, 1, generator=g) * mask})


def pg_loss(micro: TrainBatch, out: Any, scale: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """A plain policy-gradient loss (token mean over the mini-batch) for ``train_step``."""
    mask = micro.tensors["loss_mask"]
    return -(micro.tensors["advantages"] * out.logprobs * mask).sum() / scale.num_tokens, {}


def greedy_oracle(
    model_dir: Path, adapter_dir: Path, prompts: Sequence[Sequence[int]] = PROMPTS, new_tokens: int = NEW_TOKENS
) -> Outputs:
    """Greedy tokens and their log-probs from peft's own merge of the adapter in ``adapter_dir``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload().eval()
    out = []
    with torch.no_grad():
        for prompt in prompts:
            ids, tokens, logprobs = list(prompt), [], []
            for _ in range(new_tokens):
                logp = torch.log_softmax(merged(torch.tensor([ids])).logits[0, -1].double(), -1)
                token = int(logp.argmax())
                ids.append(token)
                tokens.append(token)
                logprobs.append(float(logp[token]))
            out.append((tokens, logprobs))
    return out


def engine_greedy(backend: Any, prompts: Sequence[Sequence[int]] = PROMPTS, new_tokens: int = NEW_TOKENS) -> Outputs:
    """Greedy tokens and log-probs of ``backend`` (any ``InferenceBackend``) for ``prompts``."""
    from skyrl_core.protocols.backend import GenerateRequest, SamplingParams
    from skyrl_core.testing.conformance import generate

    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    results = generate(backend, [GenerateRequest(tuple(p), params) for p in prompts])
    return [(list(r.completions[0].token_ids), list(r.completions[0].logprobs)) for r in results]


def assert_same_outputs(got: Outputs, want: Outputs, atol: float = 1e-4) -> None:
    """Same greedy tokens, and log-probs within ``atol``."""
    for (tokens, logprobs), (ref_tokens, ref_logprobs) in zip(got, want, strict=True):
        assert tokens == ref_tokens
        torch.testing.assert_close(torch.tensor(logprobs), torch.tensor(ref_logprobs), rtol=0, atol=atol)

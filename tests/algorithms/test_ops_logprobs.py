"""Chunked token log-probs and entropy against a plain (materialise-everything) reference."""

from __future__ import annotations

import pytest
import torch

from skyrl_core.ops.logprobs import entropy_from_logits, token_logprobs


def ref_logprobs(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.log_softmax(logits.to(dtype) / temperature, dim=-1).gather(-1, ids[..., None]).squeeze(-1)


def ref_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    logp = torch.log_softmax(logits.to(dtype) / temperature, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def random_case(b: int = 3, t: int = 7, v: int = 50, dtype=torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, t, v, generator=gen) * 3).to(dtype)
    ids = torch.randint(0, v, (b, t), generator=gen)
    return logits, ids


@pytest.mark.parametrize("chunk_elements", [None, 1, 50 * 4, 50 * 5 + 7])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_token_logprobs_match_reference(chunk_elements, temperature: float) -> None:
    logits, ids = random_case()
    out = token_logprobs(logits, ids, temperature, chunk_elements=chunk_elements)
    assert out.dtype == torch.float32 and out.shape == (3, 7)
    assert torch.allclose(out, ref_logprobs(logits, ids, temperature), atol=1e-5)
    ent = entropy_from_logits(logits, temperature, chunk_elements=chunk_elements)
    assert torch.allclose(ent, ref_entropy(logits, temperature), atol=1e-5)


def test_bf16_logits_are_computed_in_float32() -> None:
    logits, ids = random_case(dtype=torch.bfloat16, v=300)
    out = token_logprobs(logits, ids, 0.7, chunk_elements=600)
    assert out.dtype == torch.float32
    # Exactly the float32 math on the bf16 values (not a bf16 log-softmax).
    assert torch.allclose(out, ref_logprobs(logits, ids, 0.7), atol=1e-5)
    bf16_softmax = torch.log_softmax(logits / 0.7, -1).gather(-1, ids[..., None]).squeeze(-1).float()
    assert not torch.allclose(out, bf16_softmax, atol=1e-5)
    assert torch.allclose(entropy_from_logits(logits, 0.7, chunk_elements=600), ref_entropy(logits, 0.7), atol=1e-5)


def test_sliced_logits_are_handled_without_flattening() -> None:
    logits, ids = random_case(t=8)
    shifted = logits[:, :-1]  # the usual next-token slice: not viewable as (B*T, V)
    with pytest.raises(RuntimeError):
        shifted.view(-1, shifted.shape[-1])
    out = token_logprobs(shifted, ids[:, 1:], chunk_elements=120)
    assert torch.allclose(out, ref_logprobs(shifted, ids[:, 1:]), atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gradients_match_autograd_reference(temperature: float) -> None:
    logits, ids = random_case()
    weights = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    (token_logprobs(a, ids, temperature, chunk_elements=100) * weights).sum().backward()
    (ref_logprobs(b, ids, temperature) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)

    a.grad = b.grad = None
    (entropy_from_logits(a, temperature, chunk_elements=100) * weights).sum().backward()
    (ref_entropy(b, temperature) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-5)


def test_gradcheck_float64() -> None:
    logits, ids = random_case(b=2, t=3, v=5, dtype=torch.float64)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, ids, 0.8, chunk_elements=7), (logits,))
    assert torch.autograd.gradcheck(lambda x: entropy_from_logits(x, 0.8, chunk_elements=7), (logits,))


def test_bf16_gradient_keeps_the_logits_dtype() -> None:
    logits, ids = random_case(dtype=torch.bfloat16)
    logits.requires_grad_(True)
    token_logprobs(logits[:, :-1], ids[:, 1:]).sum().backward()
    assert logits.grad.dtype == torch.bfloat16
    assert torch.isfinite(logits.grad.float()).all()
    assert (logits.grad[:, -1] == 0).all()  # the sliced-off position gets no gradient


def test_extreme_logits_stay_finite() -> None:
    logits = torch.tensor([[[1e4, -1e4, 0.0], [-1e30, 0.0, 1e30]]])
    ids = torch.tensor([[1, 0]])
    lp = token_logprobs(logits, ids)
    assert lp[0, 0].item() == pytest.approx(-2e4)
    assert torch.isfinite(entropy_from_logits(logits)).all()


def test_empty_and_bad_inputs() -> None:
    assert token_logprobs(torch.zeros(2, 0, 5), torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0)
    assert entropy_from_logits(torch.zeros(0, 3, 5)).shape == (0, 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        token_logprobs(torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.long), 0.0)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        entropy_from_logits(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="token_ids"):
        token_logprobs(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long))


def test_real_model_logprobs_and_parameter_gradients() -> None:
    """A tiny Qwen2 built locally: the op's log-probs and the gradients into the model's weights."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = Qwen2ForCausalLM(cfg).float()
    ids = torch.randint(0, 97, (2, 9))
    temperature = 0.9

    def run(fn) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        logits = model(input_ids=ids).logits
        lp = fn(logits[:, :-1], ids[:, 1:])
        lp.sum().backward()
        return lp.detach(), [p.grad.clone() for p in model.parameters()]

    ours, ours_grads = run(lambda lg, tgt: token_logprobs(lg, tgt, temperature, chunk_elements=97 * 4))
    ref, ref_grads = run(lambda lg, tgt: ref_logprobs(lg, tgt, temperature))
    assert torch.allclose(ours, ref, atol=1e-5)
    for g_ours, g_ref in zip(ours_grads, ref_grads, strict=True):
        assert torch.allclose(g_ours, g_ref, atol=1e-5, rtol=1e-4)

"""Shared-prompt passes: each distinct prompt of a micro-batch runs through the model once.

GRPO and its relatives sample ``n`` responses per prompt, so a micro-batch holds each prompt up
to ``n`` times, and the plain layout (``batch_layout.collate``) runs every ``prompt + response``
row through the whole model. ``[strategy] shared_prefix`` runs the distinct prompts once instead
(with gradients), gathers their keys and values to the rows of their samples (a differentiable
index into a Hugging Face ``DynamicCache``), and runs each response against them: the same
hidden states, the same log-probs and the same gradients (up to floating-point rounding: the
prompt's gradient is the sum over its samples either way), with ``(n - 1) / n`` of the prompt
tokens' compute gone. 16 prompts x 4 samples of 32 + 64 tokens: 4,608 tokens through the body
instead of 6,144.

Layout (``SharedPrefix``): the distinct prompts right-padded to ``(u, P)``; every sequence's
response without its last token (whose hidden state predicts nothing) right-padded to
``(B, Q)`` at positions ``prompt_len + j``, attending to its own prompt's ``P`` cached positions
(padding masked) and causally to itself. The hidden state that predicts response token 0 is
its prompt's last one; token ``j > 0`` is predicted from response position ``j - 1``.

Needs a body that takes a Hugging Face cache (``cache=`` or ``past_key_values=``), full
attention in every layer (a sliding window would drop cached prompt keys), and no activation
checkpointing (Hugging Face layers drop the cache while they checkpoint). ``LocalStrategy``
checks all of it at start-up, and compares the two layouts on a probe batch.
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies import model_parts


@attrs.frozen
class SharedPrefix:
    """A micro-batch of ``B`` sequences in the shared-prompt layout (``shared_layout`` builds it).

    Attributes:
        prompt_ids: ``(u, P)`` the distinct prompts, right-padded.
        prompt_mask: ``(u, P)`` 1 on real prompt tokens; None when no prompt is padded.
        owner: ``(B,)`` the distinct prompt of each sequence.
        response_ids: ``(B, Q)`` each response without its last token, right-padded (``Q`` may be 0).
        attention_mask: ``(B, P + Q)`` what the response pass attends to besides causality: its
            prompt's real tokens, then its own; None when nothing is padded.
        position_ids: ``(B, Q)`` ``prompt_len + j``.
        index: ``(N,)`` for each response token (sequence by sequence, in order: ``Collated``'s
            token order), the row of the hidden state that predicts it in the prompt pass's
            ``u * P`` hidden states followed by the response pass's ``B * Q``.
        tokens: token positions the two passes run (``u * P + B * Q``), for comparison with
            the plain layout's ``B * L``.
    """

    prompt_ids: Tensor
    prompt_mask: Tensor | None
    owner: Tensor
    response_ids: Tensor
    attention_mask: Tensor | None
    position_ids: Tensor
    index: Tensor
    tokens: int


def shared_layout(batch: TrainBatch, device: torch.device | str, *, pad_id: int = 0) -> SharedPrefix | None:
    """The shared-prompt layout of ``batch``, or None when no two sequences with a response share
    their prompt (identical token ids): then there is nothing to save and the plain layout runs.

    Every prompt must have at least one token (``collate`` checks this first).
    """
    distinct: dict[tuple[int, ...], int] = {}
    owner = [distinct.setdefault(tuple(p), len(distinct)) for p in batch.prompt_ids]
    scored = [owner[i] for i, r in enumerate(batch.response_ids) if r]
    if len(set(scored)) == len(scored):
        return None
    prompts = list(distinct)
    plen = [len(p) for p in prompts]
    width = max(plen)
    prompt_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for k, p in enumerate(prompts):
        prompt_ids[k, : len(p)] = torch.tensor(p, dtype=torch.long)
        prompt_mask[k, : len(p)] = 1
    q = max((len(r) - 1 for r in batch.response_ids), default=0)
    q = max(q, 0)
    b = len(batch.response_ids)
    response_ids = torch.full((b, q), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((b, width + q), dtype=torch.long)
    position_ids = torch.zeros((b, q), dtype=torch.long)
    index: list[int] = []
    base = len(prompts) * width  # the response pass's hidden states follow the prompt pass's
    for i, response in enumerate(batch.response_ids):
        k, n = owner[i], len(response)
        inputs = list(response[:-1])
        response_ids[i, : len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        attention_mask[i, : plen[k]] = 1
        attention_mask[i, width : width + len(inputs)] = 1
        position_ids[i] = torch.arange(plen[k], plen[k] + q)
        if n:
            index.append(k * width + plen[k] - 1)
            index.extend(base + i * q + j for j in range(n - 1))
    padded_prompts = min(plen) < width
    padded = padded_prompts or any(len(r) - 1 < q for r in batch.response_ids)
    return SharedPrefix(
        prompt_ids=prompt_ids.to(device),
        prompt_mask=prompt_mask.to(device) if padded_prompts else None,
        owner=torch.tensor(owner, dtype=torch.long, device=device),
        response_ids=response_ids.to(device),
        attention_mask=attention_mask.to(device) if padded else None,
        position_ids=position_ids.to(device),
        index=torch.tensor(index, dtype=torch.long, device=device),
        tokens=len(prompts) * width + b * q,
    )


_CACHE_CLASS: Any = None


def _new_cache(body: nn.Module) -> Any:
    """A ``DynamicCache`` whose updates run outside compiled graphs (``[strategy] compile``): traced,
    its per-layer bookkeeping (initialised or not, lengths, strides, the layer index) would guard
    the compiled decoder layers and recompile them for every layer and pass."""
    global _CACHE_CLASS
    if _CACHE_CLASS is None:
        from transformers import DynamicCache

        class PrefixCache(DynamicCache):
            @torch.compiler.disable
            def update(self, *args: Any, **kwargs: Any) -> Any:
                return super().update(*args, **kwargs)

        _CACHE_CLASS = PrefixCache
    try:
        return _CACHE_CLASS(config=body.config)
    except TypeError:  # older transformers: no per-layer types
        return _CACHE_CLASS()


def _cache_keyword(body: nn.Module) -> str:
    """The body's cache argument: ``cache`` (transformers >= 5.x) or ``past_key_values``."""
    params = inspect.signature(body.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def unsupported_reason(body: nn.Module | None) -> str | None:
    """Why ``body`` (a causal LM's transformer body) cannot run the shared-prompt layout, or None."""
    if body is None:
        return "the model exposes no separate transformer body (base_model)"
    params = inspect.signature(body.forward).parameters
    if "cache" not in params and "past_key_values" not in params:
        return f"{type(body).__name__}.forward takes no key/value cache"
    config = getattr(body, "config", None)
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"not every layer has full attention (layer types {sorted(kinds)})"
    try:
        cache = _new_cache(body)
    except Exception as exc:  # a config the cache cannot describe
        return f"cannot build a key/value cache for it ({type(exc).__name__}: {exc})"
    if any(getattr(cache, "is_sliding", None) or ()):
        return "it has sliding-window layers (cached prompt keys could fall out of the window)"
    return None


def hidden_states(body: nn.Module, sp: SharedPrefix) -> Tensor:
    """Final hidden states ``(N, H)`` that predict the response tokens, in ``sp.index`` order.

    ``body`` is a Hugging Face transformer body (``model.model``: returns ``last_hidden_state``).
    Differentiable: the prompt pass's gradient collects every sample's share through the cache
    gather.
    """
    cache = _new_cache(body)
    key = _cache_keyword(body)
    positions = torch.arange(sp.prompt_ids.shape[1], device=sp.prompt_ids.device).expand_as(sp.prompt_ids)
    prompt = body(
        input_ids=sp.prompt_ids, attention_mask=sp.prompt_mask, position_ids=positions, use_cache=True, **{key: cache}
    ).last_hidden_state
    parts = [prompt.flatten(0, 1)]
    if sp.response_ids.shape[1] > 0:
        cache.batch_select_indices(sp.owner)  # each sample's copy of its prompt's keys and values
        response = body(
            input_ids=sp.response_ids,
            attention_mask=sp.attention_mask,
            position_ids=sp.position_ids,
            use_cache=True,
            **{key: cache},
        ).last_hidden_state
        parts.append(response.flatten(0, 1))
    return torch.cat(parts).index_select(0, sp.index)


def probe(vocab: int) -> TrainBatch:
    """A batch on which the start-up check compares the two layouts: prompts of different lengths
    shared by two or three sequences, responses of different lengths (one of a single token, one
    empty), and a prompt of its own."""
    v = [t % vocab for t in range(1, 40)]
    prompts = [v[0:3], v[0:3], v[3:4], v[3:4], v[3:4], v[4:9]]
    responses = [v[9:13], v[13:14], v[14:17], v[17:22], [], v[22:24]]
    return TrainBatch([list(p) for p in prompts], [list(r) for r in responses])


def response_logits(lm: nn.Module, sp: SharedPrefix) -> Tensor:
    """Logits ``(N, V)`` of the causal LM ``lm`` for the response tokens of ``sp`` (its LM head on
    ``hidden_states``: the ``'sliced'`` head of ``model_parts.response_logits``)."""
    return lm.get_output_embeddings()(hidden_states(model_parts.backbone(lm), sp))


def response_values(critic: model_parts.ValueModel, sp: SharedPrefix) -> Tensor:
    """The critic's values ``(N,)`` (float32) at the same positions as ``response_logits``."""
    return critic.head(hidden_states(critic.backbone, sp)).squeeze(-1).float()

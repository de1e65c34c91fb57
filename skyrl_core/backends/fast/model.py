"""The forward pass of a Llama-family decoder over a static KV cache.

It runs the Hugging Face model's own modules (embeddings, norms, projections, MLP,
rotary embedding, LM head), so weights stay shared with the model that ``update_weights``
writes into, and only replaces the attention and the cache:

* ``StaticKVCache`` holds keys and values of every layer in two preallocated tensors
  ``(layers, rows, kv_heads, max_len, head_dim)``. A sequence lives in one row, from
  position 0 (no left padding); ``compact`` moves the surviving rows to the front when
  sequences retire.
* ``prefill`` runs right-padded prompts of similar lengths with causal SDPA and writes their
  keys/values into any cache rows (a prompt's ``n`` samples get copies of its row).
* ``decode`` runs one token per row at per-row positions, attending to the first ``span``
  cache positions with a length mask. Every shape depends only on ``(rows, span)``, so a
  decode step can be captured in a CUDA graph and replayed.

Supported: models whose decoder layers are ``input_layernorm -> self_attn (q/k/v/o_proj,
optional q_norm/k_norm) -> residual -> post_attention_layernorm -> mlp -> residual`` with
full causal attention (Llama, Qwen2, Qwen3, Mistral without sliding window).
``unsupported_reason`` says why another model is not.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")


def unsupported_reason(model: Any) -> str | None:
    """Why the static engine cannot run ``model`` (None when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    body = getattr(model, "model", None)
    parts = ("embed_tokens", "layers", "norm", "rotary_emb")
    if body is None or any(not hasattr(body, p) for p in parts) or model.get_output_embeddings() is None:
        return f"{type(model).__name__} does not have the usual model.{{{', '.join(parts)}}} + lm_head layout"
    if any(getattr(layer.self_attn, "sliding_window", None) for layer in body.layers):
        return "sliding-window attention is not supported"
    if getattr(config, "use_sliding_window", False) and getattr(config, "sliding_window", None):
        return "sliding-window attention is not supported"
    return None


class StaticKVCache:
    """Keys and values of ``rows`` sequences of up to ``max_len`` tokens, preallocated.

    Attributes:
        k, v: ``(layers, rows, kv_heads, max_len, head_dim)`` in the model dtype.
    """

    def __init__(self, layers: int, rows: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        shape = (layers, rows, kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def rows(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def compact(self, keep: Tensor, upto: int) -> None:
        """Move rows ``keep`` ``(n,)`` to rows ``0..n-1`` (their first ``upto`` positions)."""
        n = keep.shape[0]
        for t in (self.k, self.v):
            for layer in t:  # one layer at a time bounds the temporary copy
                layer[:n, :, :upto] = layer[keep, :, :upto]  # the gather copies before the write

    def copy_rows(self, src: Tensor, dst: Tensor, upto: int) -> None:
        """Copy the first ``upto`` positions of rows ``src`` into rows ``dst`` (both ``(n,)``)."""
        for t in (self.k, self.v):
            for layer in t:
                layer[dst, :, :upto] = layer[src, :, :upto]


class StaticDecoder:
    """Prefill and decode of a supported Hugging Face causal LM on a ``StaticKVCache``.

    Shapes: ``B`` rows, ``T`` tokens per row, ``H`` query heads, ``G`` kv heads, ``D`` head dim.
    """

    def __init__(self, model: Any) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the static engine cannot run this model: {reason}")
        self.model = model
        body = model.model
        self.body = body
        self.layers = list(body.layers)
        attn = self.layers[0].self_attn
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(attn, "head_dim", None) or config.hidden_size // self.heads
        self.groups = self.heads // self.kv_heads
        self.scaling = float(getattr(attn, "scaling", self.head_dim**-0.5))
        self.lm_head = model.get_output_embeddings()

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def new_cache(self, rows: int, max_len: int) -> StaticKVCache:
        return StaticKVCache(len(self.layers), rows, self.kv_heads, max_len, self.head_dim, self.dtype, self.device)

    # -- pieces ---------------------------------------------------------------------------

    def _rope(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``cos, sin`` ``(B, T, D)`` for ``positions`` ``(B, T)`` from the model's rotary module."""
        return self.body.rotary_emb(x, positions)

    @staticmethod
    def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Apply rotary embeddings to ``x`` ``(B, heads, T, D)`` with ``cos, sin`` ``(B, T, D)``."""
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _qkv(self, layer: Any, h: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Projections of ``h`` ``(B, T, hidden)``: ``q`` ``(B, H, T, D)``, ``k, v`` ``(B, G, T, D)``."""
        attn = layer.self_attn
        b, t, _ = h.shape
        q = attn.q_proj(h).view(b, t, self.heads, self.head_dim)
        k = attn.k_proj(h).view(b, t, self.kv_heads, self.head_dim)
        v = attn.v_proj(h).view(b, t, self.kv_heads, self.head_dim)
        if getattr(attn, "q_norm", None) is not None:  # Qwen3: per-head RMSNorm before RoPE
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin), v

    def _finish_layer(self, layer: Any, residual: Tensor, attn_out: Tensor) -> Tensor:
        h = residual + layer.self_attn.o_proj(attn_out)
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def logits(self, hidden: Tensor) -> Tensor:
        """``(B, V)`` logits from last-layer hidden states ``(B, hidden)`` (final norm included)."""
        return self.lm_head(self.body.norm(hidden))

    # -- passes ---------------------------------------------------------------------------

    def prefill(self, cache: StaticKVCache, input_ids: Tensor, lengths: Tensor, dest: Tensor, owner: Tensor) -> Tensor:
        """Run right-padded prompts and store their keys/values.

        Args:
            cache: receives positions ``0..T-1`` of rows ``dest``.
            input_ids: ``(P, T)`` prompts, right-padded (padding never influences real tokens:
                attention is causal).
            lengths: ``(P,)`` real lengths.
            dest: ``(R,)`` cache rows to fill.
            owner: ``(R,)`` which prompt each of those rows holds (a prompt may fill several).

        Returns:
            ``(P, V)`` logits at each prompt's last real token.
        """
        p, t = input_ids.shape
        positions = torch.arange(t, device=input_ids.device).expand(p, t)
        h = self.body.embed_tokens(input_ids)
        cos, sin = self._rope(h, positions)
        for i, layer in enumerate(self.layers):
            residual = h
            q, k, v = self._qkv(layer, layer.input_layernorm(h), cos, sin)
            cache.k[i, dest, :, :t] = k.index_select(0, owner)
            cache.v[i, dest, :, :t] = v.index_select(0, owner)
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scaling, enable_gqa=self.groups > 1
            )
            h = self._finish_layer(layer, residual, out.transpose(1, 2).reshape(p, t, -1))
        last = h[torch.arange(p, device=h.device), lengths - 1]
        return self.logits(last)

    def decode(self, cache: StaticKVCache, tokens: Tensor, positions: Tensor, span: int) -> Tensor:
        """One token per cache row ``0..B-1``.

        Args:
            cache: rows ``0..B-1`` hold the sequences; position ``positions[b]`` of row ``b`` is written.
            tokens: ``(B,)`` the tokens to append.
            positions: ``(B,)`` their positions (= the row's current length); all ``< span``.
            span: cache positions attended to (a static bound for graph capture).

        Returns:
            ``(B, V)`` next-token logits.
        """
        b = tokens.shape[0]
        rows = torch.arange(b, device=tokens.device)
        h = self.body.embed_tokens(tokens[:, None])  # (B, 1, hidden)
        cos, sin = self._rope(h, positions[:, None])
        # Additive mask (B, 1, 1, span): 0 up to the row's position, -inf after.
        visible = torch.arange(span, device=tokens.device)[None, :] <= positions[:, None]
        mask = torch.zeros(visible.shape, dtype=torch.float32, device=tokens.device)
        mask = mask.masked_fill(~visible, float("-inf"))[:, None, None, :]
        for i, layer in enumerate(self.layers):
            residual = h
            q, k, v = self._qkv(layer, layer.input_layernorm(h), cos, sin)
            cache.k[i, rows, :, positions] = k[:, :, 0]
            cache.v[i, rows, :, positions] = v[:, :, 0]
            keys = cache.k[i, :b, :, :span]  # (B, G, span, D), a strided view
            values = cache.v[i, :b, :, :span]
            # The G query heads that share a kv head form the "query length": no key copies.
            qg = q.view(b, self.kv_heads, self.groups, self.head_dim)
            scores = torch.matmul(qg, keys.transpose(-1, -2)).float() * self.scaling + mask
            probs = torch.softmax(scores, dim=-1).to(values.dtype)
            out = torch.matmul(probs, values)  # (B, G, groups, D)
            h = self._finish_layer(layer, residual, out.reshape(b, 1, self.heads * self.head_dim))
        return self.logits(h[:, 0])

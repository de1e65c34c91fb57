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

Fewer kernels per layer, since a small-batch decode step is bound by their count: the q/k/v
weights (and gate/up) of each layer are fused into one matrix by *aliasing*: the model's
own parameters become views into the fused tensor, so ``update_weights`` (which copies in
place) keeps it current at no cost. ``fuse()`` redoes it when something replaced the
parameters' storage (sleep/wake moves them). RMSNorm uses ``torch.rms_norm``, RoPE is
applied to q and k together, and decode attention is one masked SDPA call.

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
from torch.nn.attention import SDPBackend, sdpa_kernel

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
# Masked attention with a few queries per kv head: the memory-efficient kernel on CUDA; on the
# CPU the flash kernel, which takes a mask there and reads the strided cache view without the
# math path's copies and scaled key tensor (about 1.6x faster per decode step's attention).
_DECODE_BACKENDS = {"cuda": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
                    "cpu": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]}


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


def _alias(params: list[Any]) -> Tensor | None:
    """Concatenate ``params`` (dim 0) into one new tensor and make each parameter a view into it.

    Returns the fused tensor, or None when one of them is missing.
    """
    if any(p is None for p in params):
        return None
    fused = torch.cat([p.data for p in params], dim=0)
    start = 0
    for p in params:
        p.data = fused[start : start + p.shape[0]]
        start += p.shape[0]
    return fused


class _Fused:
    """One layer's fused projection weights (views of which are the model's parameters)."""

    def __init__(self, layer: Any) -> None:
        attn, mlp = layer.self_attn, layer.mlp
        projs = [attn.q_proj, attn.k_proj, attn.v_proj]
        self.qkv_w = _alias([p.weight for p in projs])
        biases = [p.bias for p in projs]
        self.qkv_b = _alias(biases) if all(b is not None for b in biases) else None
        self.qkv_ok = self.qkv_w is not None and (self.qkv_b is not None or all(b is None for b in biases))
        self.gate_up_w = self.gate_up_b = None
        self.mlp_ok = all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn"))
        if self.mlp_ok:
            self.gate_up_w = _alias([mlp.gate_proj.weight, mlp.up_proj.weight])
            gb = [mlp.gate_proj.bias, mlp.up_proj.bias]
            self.gate_up_b = _alias(gb) if all(b is not None for b in gb) else None
            self.mlp_ok = self.gate_up_b is not None or all(b is None for b in gb)

    def current(self, layer: Any) -> bool:
        """Whether the layer's parameters still point into these tensors."""
        attn = layer.self_attn
        ok = not self.qkv_ok or attn.q_proj.weight.data_ptr() == self.qkv_w.data_ptr()
        return ok and (not self.mlp_ok or layer.mlp.gate_proj.weight.data_ptr() == self.gate_up_w.data_ptr())


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
        self._fused: list[_Fused] = []
        self.fuse()

    @torch.no_grad()
    def fuse(self) -> bool:
        """(Re)fuse the projection weights if the parameters moved; True if anything changed."""
        if self._fused and all(f.current(layer) for f, layer in zip(self._fused, self.layers, strict=True)):
            return False
        self._fused = [_Fused(layer) for layer in self.layers]
        return True

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def new_cache(self, rows: int, max_len: int) -> StaticKVCache:
        return StaticKVCache(len(self.layers), rows, self.kv_heads, max_len, self.head_dim, self.dtype, self.device)

    # -- pieces ---------------------------------------------------------------------------

    def _cos_sin(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``cos, sin`` ``(B, T, D)`` for ``positions`` ``(B, T)`` from the model's rotary module."""
        return self.body.rotary_emb(x, positions)

    @staticmethod
    def _norm(module: Any, x: Tensor) -> Tensor:
        """HF RMSNorm (normalise in float32, cast back, scale) with the fused ``torch.rms_norm``."""
        eps = getattr(module, "variance_epsilon", None)
        if eps is None:
            return module(x)
        return module.weight * torch.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)

    @staticmethod
    def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """``x * cos + rotate_half(x) * sin`` for ``x`` ``(B, T, heads, D)``, ``cos, sin`` ``(B, T, D)``."""
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
        half = x.shape[-1] // 2
        out = x * cos
        out[..., :half].addcmul_(x[..., half:], sin[..., :half], value=-1.0)
        out[..., half:].addcmul_(x[..., :half], sin[..., half:])
        return out

    def _qkv(self, i: int, h: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Projections of ``h`` ``(B, T, hidden)`` with RoPE: ``q`` ``(B, T, H, D)``, ``k, v`` ``(B, T, G, D)``."""
        layer, fused = self.layers[i], self._fused[i]
        attn = layer.self_attn
        b, t, _ = h.shape
        hq, hk = self.heads, self.kv_heads
        if fused.qkv_ok:
            qkv = F.linear(h, fused.qkv_w, fused.qkv_b).view(b, t, hq + 2 * hk, self.head_dim)
            qk, v = qkv[:, :, : hq + hk], qkv[:, :, hq + hk :]
        else:
            qk = torch.cat([attn.q_proj(h), attn.k_proj(h)], dim=-1).view(b, t, hq + hk, self.head_dim)
            v = attn.v_proj(h).view(b, t, hk, self.head_dim)
        if getattr(attn, "q_norm", None) is not None:  # Qwen3: per-head RMSNorm before RoPE
            qk = torch.cat([attn.q_norm(qk[:, :, :hq]), attn.k_norm(qk[:, :, hq:])], dim=2)
        qk = self._rope(qk, cos, sin)
        return qk[:, :, :hq], qk[:, :, hq:], v

    def _finish_layer(self, i: int, residual: Tensor, attn_out: Tensor) -> Tensor:
        layer, fused = self.layers[i], self._fused[i]
        h = residual + layer.self_attn.o_proj(attn_out)
        x = self._norm(layer.post_attention_layernorm, h)
        mlp = layer.mlp
        if fused.mlp_ok:
            gate, up = F.linear(x, fused.gate_up_w, fused.gate_up_b).chunk(2, dim=-1)
            return h + mlp.down_proj(mlp.act_fn(gate).mul_(up))
        return h + mlp(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """``(B, V)`` logits from last-layer hidden states ``(B, hidden)`` (final norm included)."""
        return self.lm_head(self._norm(self.body.norm, hidden))

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
        cos, sin = self._cos_sin(h, positions)
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(i, self._norm(layer.input_layernorm, h), cos, sin)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (P, heads, T, D)
            cache.k[i, dest, :, :t] = k.index_select(0, owner)
            cache.v[i, dest, :, :t] = v.index_select(0, owner)
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scaling, enable_gqa=self.groups > 1
            )
            h = self._finish_layer(i, h, out.transpose(1, 2).reshape(p, t, -1))
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
        cos, sin = self._cos_sin(h, positions[:, None])
        # (B, 1, 1, span): a row sees its cache up to its own position.
        visible = (torch.arange(span, device=tokens.device)[None, :] <= positions[:, None])[:, None, None, :]
        backends = _DECODE_BACKENDS.get(tokens.device.type, [SDPBackend.MATH])
        for i, layer in enumerate(self.layers):
            q, k, v = self._qkv(i, self._norm(layer.input_layernorm, h), cos, sin)
            cache.k[i, rows, :, positions] = k[:, 0]
            cache.v[i, rows, :, positions] = v[:, 0]
            keys = cache.k[i, :b, :, :span]  # (B, G, span, D), a strided view
            values = cache.v[i, :b, :, :span]
            # The query heads that share a kv head form the "query length": no key copies.
            qg = q.reshape(b, self.kv_heads, self.groups, self.head_dim)
            with sdpa_kernel(backends):
                out = F.scaled_dot_product_attention(qg, keys, values, attn_mask=visible, scale=self.scaling)
            h = self._finish_layer(i, h, out.reshape(b, 1, self.heads * self.head_dim))
        return self.logits(h[:, 0])

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

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from skyrl_core.backends.sampling import RowSampling, sample, sample_plain

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "qwen3", "mistral")
# Masked attention with a few queries per kv head: the memory-efficient kernel on CUDA; on the
# CPU the flash kernel, which takes a mask there and reads the strided cache view without the
# math path's copies and scaled key tensor (about 1.6x faster per decode step's attention).
_DECODE_BACKENDS = {"cuda": [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
                    "cpu": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]}

#: ``decode``'s attended cache positions: one span for every row, or row chunks with spans of their
#: own, ``((start, end, span), ...)`` covering rows ``0..B-1`` in order (rows sorted longest first
#: read fewer masked positions; ``StaticEngine`` builds them).
Spans = int | tuple[tuple[int, int, int], ...]


def span_of(spans: Spans) -> int:
    """The longest span of ``spans``."""
    return spans if isinstance(spans, int) else max(sp for _, _, sp in spans)


def _attend(qg: Tensor, cache: StaticKVCache, i: int, visible: Tensor, spans: Spans, scale: float) -> Tensor:
    """Decode attention of layer ``i``: ``qg`` ``(B, G, groups, D)`` against each row's cached keys
    and values up to its chunk's span (``visible``: the additive mask up to the longest span). The
    caller picks the SDPA backends (``_decode_backends``), once per step."""
    b = qg.shape[0]
    if isinstance(spans, int):
        spans = ((0, b, spans),)
    if len(spans) == 1:
        _, _, sp = spans[0]
        return F.scaled_dot_product_attention(qg, cache.k[i, :b, :, :sp], cache.v[i, :b, :, :sp],
                                              attn_mask=visible[..., :sp], scale=scale)
    out = torch.empty_like(qg)
    for start, end, sp in spans:
        out[start:end] = F.scaled_dot_product_attention(
            qg[start:end], cache.k[i, start:end, :, :sp], cache.v[i, start:end, :, :sp],
            attn_mask=visible[start:end, ..., :sp], scale=scale,
        )
    return out


def _decode_backends(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The SDPA backends of a decode step's attention, for the whole step: entering ``sdpa_kernel``
    costs ~70 us on the CPU, paid once per step instead of once per layer (bench/RESULTS.md, run 8)."""
    return sdpa_kernel(_DECODE_BACKENDS.get(device.type, [SDPBackend.MATH]))


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

    def __init__(self, model: Any, *, compile: bool = False, attention: str = "sdpa") -> None:
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
        # The split-KV Triton kernel's entry point (``triton_attention.decode_attention``) or None: SDPA.
        self._triton_decode: Any = None
        if self._resolve_attention(attention):
            from skyrl_core.backends.static.triton_attention import decode_attention

            self._triton_decode = decode_attention
        self.compiled: CompiledDecode | None = None
        if compile:
            reason = CompiledDecode.unsupported_reason(self)
            if reason is not None:
                raise ValueError(f"[backend] compile: the compiled decode step cannot run this model: {reason}")
            self.compiled = CompiledDecode(self)

    @property
    def triton_attention(self) -> bool:
        """Decode attention by the split-KV Triton kernel (each row reads its own cache length and the
        kernel writes the step's keys and values); else SDPA over the span."""
        return self._triton_decode is not None

    def _resolve_attention(self, choice: str) -> bool:
        """``[backend] decode_attention``: 'triton', 'sdpa', or 'auto' (Triton on CUDA when a probe on
        random data shaped like this model's agrees with the reference; else SDPA with a notice)."""
        if choice == "sdpa":
            return False
        if choice not in ("auto", "triton"):
            raise ValueError(f"[backend] decode_attention must be 'auto', 'triton' or 'sdpa', not {choice!r}")
        if choice == "auto" and self.device.type != "cuda":
            return False
        from skyrl_core.backends.static import triton_attention

        reason = triton_attention.unavailable_reason(self.device)
        if reason is None:
            reason = triton_attention.probe(self.device, self.dtype, self.kv_heads, self.groups, self.head_dim)
            if reason is not None and choice == "auto":
                print(f"native: [backend] decode_attention auto: SDPA, the Triton kernel failed its start-up check: "
                      f"{reason}", flush=True)
        if reason is None:
            return True
        if choice == "triton":
            raise ValueError(f"[backend] decode_attention = 'triton': {reason}; use 'auto' or 'sdpa'")
        return False

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

    def decode_mask(self, positions: Tensor, span: int) -> Tensor:
        """``(B, 1, 1, span)`` additive attention bias in the model dtype: 0 where a row sees its cache
        (up to its own position), -inf elsewhere. Built once per step: SDPA would turn a boolean mask
        into this bias again in every layer."""
        visible = torch.arange(span, device=positions.device)[None, :] <= positions[:, None]
        bias = torch.zeros(visible.shape, dtype=self.dtype, device=positions.device)
        return bias.masked_fill_(~visible, float("-inf"))[:, None, None, :]

    def _attention(self, qg: Tensor, k: Tensor, v: Tensor, cache: StaticKVCache, i: int, rows: Tensor,
                   positions: Tensor, visible: Tensor | None, span: Spans) -> Tensor:
        """Write layer ``i``'s new keys/values ``(B, G, D)`` at ``positions`` and attend ``qg``
        ``(B, G, groups, D)`` to each row's cache: the Triton kernel, or SDPA over the span."""
        if self._triton_decode is not None:
            return self._triton_decode(qg, k, v, cache.k[i], cache.v[i], positions, span_of(span), self.scaling)
        cache.k[i, rows, :, positions] = k
        cache.v[i, rows, :, positions] = v
        assert visible is not None
        return _attend(qg, cache, i, visible, span, self.scaling)

    def sample(self, logits: Tensor, rows: RowSampling, counters: Tensor) -> tuple[Tensor, Tensor]:
        """``skyrl_core.backends.sampling.sample`` of a decode step's logits; with the compiled step and
        no top-k/top-p/min-p row, its filter-free path compiled too (one fused pass over the logits per
        reduction instead of ~10 eager passes over a ``(B, V)`` float32 copy)."""
        if self.compiled is not None and not rows.flags.filters:
            return self.compiled.sample_plain(logits, rows, counters)
        return sample(logits, rows, counters)

    def decode(self, cache: StaticKVCache, tokens: Tensor, positions: Tensor, span: Spans) -> Tensor:
        """One token per cache row ``0..B-1``.

        Args:
            cache: rows ``0..B-1`` hold the sequences; position ``positions[b]`` of row ``b`` is written.
            tokens: ``(B,)`` the tokens to append.
            positions: ``(B,)`` their positions (= the row's current length); all ``< span``.
            span: cache positions attended to (a static bound for graph capture), for every row or
                per row chunk (``Spans``).

        Returns:
            ``(B, V)`` next-token logits.
        """
        if self.compiled is not None:
            return self.compiled.decode(cache, tokens, positions, span)
        b = tokens.shape[0]
        rows = torch.arange(b, device=tokens.device)
        h = self.body.embed_tokens(tokens[:, None])  # (B, 1, hidden)
        cos, sin = self._cos_sin(h, positions[:, None])
        # (B, 1, 1, span): a row sees its cache up to its own position.
        visible = None if self.triton_attention else self.decode_mask(positions, span_of(span))
        with _decode_backends(tokens.device):
            for i, layer in enumerate(self.layers):
                q, k, v = self._qkv(i, self._norm(layer.input_layernorm, h), cos, sin)
                # The query heads that share a kv head form the "query length": no key copies; the
                # cached keys are strided views (B, G, span, D).
                qg = q.reshape(b, self.kv_heads, self.groups, self.head_dim)
                out = self._attention(qg, k[:, 0], v[:, 0], cache, i, rows, positions, visible, span)
                h = self._finish_layer(i, h, out.reshape(b, 1, self.heads * self.head_dim))
        return self.logits(h[:, 0])


# -- the compiled decode step ---------------------------------------------------------------
#
# Pure functions of tensors, so that one compiled graph serves every layer (the weights are
# arguments, not attributes: layers differ only in which tensors they pass). Attention and
# the cache writes stay outside the graphs: their shapes depend on the attended span, which
# changes during a batch, while everything here depends on the row count only.


def _rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Hugging Face RMSNorm: normalise in float32, cast back, scale."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope_f(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``x * cos + rotate_half(x) * sin`` for ``x`` ``(B, heads, D)``, ``cos, sin`` ``(B, 1, D)``."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _pre(h: Tensor, w: dict[str, Any], cos: Tensor, sin: Tensor, shape: tuple[int, int, int, float, float],
         ) -> tuple[Tensor, Tensor, Tensor]:
    """Input norm, fused q/k/v projection, optional q/k norms, RoPE: ``(B, H, D), (B, G, D), (B, G, D)``."""
    hq, hk, dim, eps, qk_eps = shape
    x = _rms(h, w["norm1"], eps)
    qkv = F.linear(x, w["qkv_w"], w["qkv_b"]).view(h.shape[0], hq + 2 * hk, dim)
    q, k, v = qkv[:, :hq], qkv[:, hq : hq + hk], qkv[:, hq + hk :]
    if w["q_norm"] is not None:
        q, k = _rms(q, w["q_norm"], qk_eps), _rms(k, w["k_norm"], qk_eps)
    return _rope_f(q, cos, sin), _rope_f(k, cos, sin), v


def _post(h: Tensor, attn: Tensor, w: dict[str, Any], eps: float) -> Tensor:
    """Output projection, residual, norm, gated SiLU MLP, residual: the layer's new hidden state."""
    h = h + F.linear(attn, w["o_w"], w["o_b"])
    gate, up = F.linear(_rms(h, w["norm2"], eps), w["gate_up_w"], w["gate_up_b"]).chunk(2, dim=-1)
    return h + F.linear(F.silu(gate) * up, w["down_w"], w["down_b"])


def _first(embed: Tensor, tokens: Tensor, w: dict[str, Any], cos: Tensor, sin: Tensor,
           shape: tuple[int, int, int, float, float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Embedding lookup and the first layer's ``_pre``: ``h`` and its ``q, k, v``."""
    h = F.embedding(tokens, embed)
    return (h, *_pre(h, w, cos, sin, shape))


def _middle(h: Tensor, attn: Tensor, w: dict[str, Any], w_next: dict[str, Any], cos: Tensor, sin: Tensor,
            shape: tuple[int, int, int, float, float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Layer ``i``'s ``_post`` then layer ``i + 1``'s ``_pre`` (one graph, so the residual add and the next
    norm fuse)."""
    h = _post(h, attn, w, shape[3])
    return (h, *_pre(h, w_next, cos, sin, shape))


def _last(h: Tensor, attn: Tensor, w: dict[str, Any], final_norm: Tensor, final_eps: float, lm_w: Tensor,
          lm_b: Tensor | None, eps: float) -> Tensor:
    """The last layer's ``_post``, the final norm and the LM head: ``(B, V)`` logits."""
    return F.linear(_rms(_post(h, attn, w, eps), final_norm, final_eps), lm_w, lm_b)


@contextlib.contextmanager
def _compiler_failure(part: str, eager: str) -> Iterator[None]:
    """Turn a ``torch.compile`` failure inside into a RuntimeError saying to set ``[backend] compile = false``."""
    import torch._dynamo.exc

    try:
        yield
    except torch._dynamo.exc.TorchDynamoException as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RuntimeError(
            f"[backend] compile: torch.compile failed on the static engine's {part} "
            f"({type(exc).__name__}: {first}); set [backend] compile = false {eager}"
        ) from exc


class CompiledDecode:
    """The decode step with ``torch.compile``d layer math (``[backend] compile``).

    Per layer, what runs between two attentions (output projection, residual, norm, MLP,
    residual, the next layer's norm, q/k/v projection and RoPE) is one compiled graph whose
    elementwise work inductor fuses around the matmuls: about 8 kernels per layer instead of
    about 20. Attention (one masked SDPA over the strided cache view) and the cache writes
    stay eager, so the graphs depend only on the row count (the first bucket compiles static
    shapes, a second one a dynamic row count that serves all later buckets). Compiling happens
    in the warm-up step before a CUDA graph captures the step.
    """

    def __init__(self, decoder: StaticDecoder) -> None:
        import torch._dynamo

        from skyrl_core.strategies.model_parts import RECOMPILE_LIMIT

        self.decoder = decoder
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
        setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
        self._cached: tuple[list[_Fused], list[dict[str, Any]]] | None = None
        self._first = torch.compile(_first, fullgraph=True)
        self._middle = torch.compile(_middle, fullgraph=True)
        self._last = torch.compile(_last, fullgraph=True)
        self._sample_plain = torch.compile(sample_plain, fullgraph=True)

    @staticmethod
    def unsupported_reason(decoder: StaticDecoder) -> str | None:
        """Why the compiled step cannot run ``decoder``'s model (None when it can)."""
        act = getattr(decoder.model.config, "hidden_act", None)
        if act not in ("silu", "swish"):
            return f"hidden_act {act!r} is not silu"
        for i, (layer, fused) in enumerate(zip(decoder.layers, decoder._fused, strict=True)):
            if not (fused.qkv_ok and fused.mlp_ok):
                return f"layer {i} does not have separate q/k/v and gate/up projections to fuse"
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                if getattr(norm, "variance_epsilon", None) is None:
                    return f"layer {i} has a norm that is not an RMSNorm"
        if getattr(decoder.body.norm, "variance_epsilon", None) is None:
            return "the final norm is not an RMSNorm"
        return None

    def _weights(self, i: int) -> dict[str, Any]:
        d = self.decoder
        layer, fused = d.layers[i], d._fused[i]
        attn, mlp = layer.self_attn, layer.mlp
        q_norm = getattr(attn, "q_norm", None)
        k_norm = getattr(attn, "k_norm", None)
        return {
            "norm1": layer.input_layernorm.weight, "qkv_w": fused.qkv_w, "qkv_b": fused.qkv_b,
            "q_norm": None if q_norm is None else q_norm.weight, "k_norm": None if k_norm is None else k_norm.weight,
            "o_w": attn.o_proj.weight, "o_b": attn.o_proj.bias, "norm2": layer.post_attention_layernorm.weight,
            "gate_up_w": fused.gate_up_w, "gate_up_b": fused.gate_up_b,
            "down_w": mlp.down_proj.weight, "down_b": mlp.down_proj.bias,
        }

    def decode(self, cache: StaticKVCache, tokens: Tensor, positions: Tensor, span: Spans) -> Tensor:
        """``StaticDecoder.decode`` with the compiled layer math (same arguments, same result to rounding).

        Raises:
            RuntimeError: the compiler failed (at the first step, or at the recompile for a new row
                count), saying to set ``[backend] compile = false``.
        """
        with _compiler_failure("decode step", "to decode with the eager layer code"):
            return self._decode(cache, tokens, positions, span)

    def sample_plain(self, logits: Tensor, rows: RowSampling, counters: Tensor) -> tuple[Tensor, Tensor]:
        """``sampling.sample_plain`` compiled (same draws: same uniforms, rounding aside)."""
        with _compiler_failure("sampler", "to sample eagerly"):
            return self._sample_plain(logits, rows.temperature, rows.greedy, rows.seeds, counters,
                                      all_greedy=rows.flags.all_greedy)

    def _decode(self, cache: StaticKVCache, tokens: Tensor, positions: Tensor, span: Spans) -> Tensor:
        d = self.decoder
        b = tokens.shape[0]
        if self._cached is None or self._cached[0] is not d._fused:  # fuse() made new tensors
            self._cached = (d._fused, [self._weights(i) for i in range(len(d.layers))])
        layers = self._cached[1]
        attn0 = d.layers[0].self_attn
        qk_eps = float(getattr(getattr(attn0, "q_norm", None), "variance_epsilon", 0.0) or 0.0)
        eps = float(d.layers[0].input_layernorm.variance_epsilon)
        shape = (d.heads, d.kv_heads, d.head_dim, eps, qk_eps)
        embed = d.body.embed_tokens.weight
        cos, sin = d._cos_sin(embed[:1][None], positions[:, None])  # (B, 1, D)
        rows = torch.arange(b, device=tokens.device)
        visible = None if d.triton_attention else d.decode_mask(positions, span_of(span))
        h, q, k, v = self._first(embed, tokens, layers[0], cos, sin, shape)
        logits = None
        for i in range(len(layers)):
            qg = q.view(b, d.kv_heads, d.groups, d.head_dim)
            with _decode_backends(tokens.device):  # around the attention only: dynamo graphs stay outside
                out = d._attention(qg, k, v, cache, i, rows, positions, visible, span)
            out = out.reshape(b, d.heads * d.head_dim)
            if i + 1 < len(layers):
                h, q, k, v = self._middle(h, out, layers[i], layers[i + 1], cos, sin, shape)
            else:
                norm = d.body.norm
                logits = self._last(h, out, layers[i], norm.weight, float(norm.variance_epsilon), d.lm_head.weight,
                                    d.lm_head.bias, eps)
        assert logits is not None
        return logits

"""Decode attention by a split-KV Triton kernel that reads each row's own cache length.

The SDPA path of the static engine (``model._attend``) attends every row to one static span, the
longest row rounded up, with an additive mask; with prompts of mixed lengths most of the bytes it
reads are masked out, and PyTorch's memory-efficient kernel reads even the live ones at about a
third of the card's bandwidth for a decode-shaped query (the H100 profile in bench/RESULTS.md:
45 us per layer-step at batch 256 on the 0.5B shape, 56 % of the realistic decode's GPU time).

``decode_attention`` instead runs one program per (row, kv head, split of the cache positions);
a program stops at its row's own length (``positions + 1``, read on the device, so a CUDA graph
captured once serves every step), attends all the query heads that share its kv head at once
(grouped-query attention without copies) and writes the step's new key and value into the cache
on the way (the two cache writes of the SDPA path are two more kernels per layer). Splits are
merged by their log-sum-exp in a second small kernel. The number of splits depends on the static
span bound the engine already keys its graphs on.

``[backend] decode_attention`` chooses it (``"auto"``: on CUDA when Triton imports and a start-up
probe agrees with SDPA). On the CPU it runs only under Triton's interpreter (tests).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import Tensor

# The launch defaults come from bench/decode_attention_tune.py on one H100 (2026-12-08, 5 decode
# shapes of the 0.5B model, 256/64 rows x 192/640 cache positions and a mixed-length batch; 135
# configurations): block_n 128, 2 waves, 4 warps, 1 stage had the best geometric mean, 16.2 us per
# layer-call against 18.3 us for the previous defaults (block_n 64, 4 waves, Triton's launch
# defaults); at 256 rows x 192 positions 13.6 against 17.2 us. bench/RESULTS.md has the table.
#: Cache positions per inner block of a program.
BLOCK_N = 128
#: Programs per streaming multiprocessor the split plan aims for.
WAVES = 2
#: Triton launch options of the split kernel (None: Triton's defaults).
NUM_WARPS: int | None = 4
NUM_STAGES: int | None = 1


def _env_overrides() -> None:
    """``SKYRL_TRITON_DECODE_CONFIG='{"block_n": 32, "waves": 8, "num_warps": 2, "num_stages": 3}'``
    replaces the defaults above (how the tuning bench's choice is measured end to end)."""
    global BLOCK_N, WAVES, NUM_WARPS, NUM_STAGES
    raw = os.environ.get("SKYRL_TRITON_DECODE_CONFIG")
    if not raw:
        return
    import json

    try:
        cfg = json.loads(raw)
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        unknown = set(cfg) - {"block_n", "waves", "num_warps", "num_stages"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        for key, val in cfg.items():
            if not (isinstance(val, int) and not isinstance(val, bool) and val > 0) and val is not None:
                raise ValueError(f"{key} must be a positive integer, not {val!r}")
        if cfg.get("block_n") and (cfg["block_n"] < 16 or cfg["block_n"] & (cfg["block_n"] - 1)):
            raise ValueError(f"block_n must be a power of two >= 16, not {cfg['block_n']}")
    except ValueError as exc:
        raise ValueError(f"SKYRL_TRITON_DECODE_CONFIG={raw!r}: {exc}; expected a JSON object with "
                         "block_n, waves, num_warps and/or num_stages") from None
    BLOCK_N = int(cfg.get("block_n") or BLOCK_N)
    WAVES = int(cfg.get("waves") or WAVES)
    NUM_WARPS = cfg.get("num_warps") or NUM_WARPS
    NUM_STAGES = cfg.get("num_stages") or NUM_STAGES


_env_overrides()


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


@functools.cache
def _kernels() -> Any:
    from skyrl_core.backends.static import _triton_decode

    return _triton_decode


def unavailable_reason(device: torch.device) -> str | None:
    """Why the Triton decode attention cannot run on ``device`` (None when it can)."""
    if device.type != "cuda":
        if os.environ.get("TRITON_INTERPRET") != "1":
            return f"it runs on CUDA devices (this one is {device.type!r})"
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"Triton does not import ({exc})"
    return None


@functools.cache
def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (8 for the CPU interpreter: a few splits get tested)."""
    if device.type != "cuda":
        return 8
    return torch.cuda.get_device_properties(device).multi_processor_count


def split_plan(rows: int, kv_heads: int, span: int, sms: int, *, block_n: int | None = None,
               waves: int | None = None) -> tuple[int, int]:
    """``(splits, split_len)``: cut ``span`` positions into splits of ``split_len`` (a multiple of
    ``block_n``) so that rows x kv heads x splits programs fill the card about ``waves`` times over."""
    block_n = block_n or BLOCK_N
    blocks = max(1, -(-span // block_n))
    want = max(1, -(-(waves or WAVES) * sms // max(1, rows * kv_heads)))
    splits = min(want, blocks)
    split_len = -(-blocks // splits) * block_n
    return -(-span // split_len), split_len


def decode_attention(q: Tensor, k_new: Tensor, v_new: Tensor, k_cache: Tensor, v_cache: Tensor, positions: Tensor,
                     span: int, scale: float, *, block_n: int | None = None, waves: int | None = None,
                     num_warps: int | None = None, num_stages: int | None = None) -> Tensor:
    """Write one step's keys and values into the cache and attend to each row's cache.

    Args:
        q: ``(B, G, groups, D)`` queries (the ``groups`` query heads of each of ``G`` kv heads).
        k_new, v_new: ``(B, G, D)`` this step's keys and values (RoPE applied to the keys).
        k_cache, v_cache: ``(rows >= B, G, L, D)`` one layer of the cache; position ``positions[b]``
            of row ``b`` receives ``k_new[b]`` / ``v_new[b]``.
        positions: ``(B,)`` integer positions of the new tokens; row ``b`` attends to its cache
            positions ``0..positions[b]`` (all ``< span <= L``).
        span: a static bound on ``positions + 1`` (sets the number of splits).
        scale: the softmax scale.
        block_n, waves, num_warps, num_stages: tuning knobs (``bench/decode_attention_tune.py``);
            None takes the module's defaults.

    Returns:
        ``(B, G, groups, D)`` attention outputs in ``q``'s dtype.
    """
    k = _kernels()
    b, g, groups, d = q.shape
    for name, t in (("q", q), ("k_new", k_new), ("v_new", v_new), ("k_cache", k_cache), ("v_cache", v_cache)):
        if t.stride(-1) != 1:
            raise ValueError(f"decode_attention: {name} must have a contiguous last dimension")
    block_n = block_n or BLOCK_N
    splits, split_len = split_plan(b, g, span, _sm_count(q.device), block_n=block_n, waves=waves)
    launch = {key: val for key, val in (("num_warps", num_warps or NUM_WARPS), ("num_stages", num_stages or NUM_STAGES))
              if val is not None}
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    gp, dp = max(16, _pow2(groups)), max(16, _pow2(d))
    direct = splits == 1
    if direct:
        mo = ml = out  # unused by the kernel
        s_m = (0, 0, 0, 0)
        s_l = (0, 0, 0)
    else:
        mo = torch.empty((b, g, splits, groups, d), dtype=torch.float32, device=q.device)
        ml = torch.empty((b, g, splits, groups), dtype=torch.float32, device=q.device)
        s_m, s_l = mo.stride()[:4], ml.stride()[:3]
    ieee = q.dtype == torch.float32
    k._split[(b, g, splits)](
        q, k_new, v_new, k_cache, v_cache, positions, mo, ml, out,
        *q.stride()[:3], *k_new.stride()[:2], *v_new.stride()[:2],
        *k_cache.stride()[:3], *v_cache.stride()[:3], *s_m, *s_l, *out.stride()[:3],
        float(scale), split_len,
        GROUPS=groups, GROUPS_PAD=gp, D=d, D_PAD=dp, BLOCK_N=block_n, DIRECT=direct, IEEE=ieee, **launch,
    )
    if not direct:
        k._combine[(b, g)](
            mo, ml, out, *s_m, *s_l, *out.stride()[:3], splits,
            GROUPS=groups, GROUPS_PAD=gp, D=d, D_PAD=dp,
        )
    return out


def reference(q: Tensor, k_new: Tensor, v_new: Tensor, k_cache: Tensor, v_cache: Tensor, positions: Tensor,
              scale: float) -> Tensor:
    """``decode_attention`` in plain torch (float32 math), for tests and the start-up probe."""
    b = q.shape[0]
    rows = torch.arange(b, device=q.device)
    k_cache[rows, :, positions] = k_new
    v_cache[rows, :, positions] = v_new
    span = int(positions.max()) + 1
    keys, values = k_cache[:b, :, :span].float(), v_cache[:b, :, :span].float()
    scores = torch.einsum("bghd,bgnd->bghn", q.float(), keys) * scale
    visible = torch.arange(span, device=q.device)[None, :] <= positions[:, None]
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    return torch.einsum("bghn,bgnd->bghd", torch.softmax(scores, dim=-1), values).to(q.dtype)


def probe(device: torch.device, dtype: torch.dtype, kv_heads: int, groups: int, head_dim: int) -> str | None:
    """Run the kernel once on random data shaped like the model's and compare it with ``reference``.

    Returns:
        None when they agree; else what went wrong (the engine then keeps SDPA, with a notice).
    """
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        b, length = 5, 300

        def rnd(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

        q, kn, vn = rnd(b, kv_heads, groups, head_dim), rnd(b, kv_heads, head_dim), rnd(b, kv_heads, head_dim)
        kc, vc = rnd(b + 1, kv_heads, length, head_dim), rnd(b + 1, kv_heads, length, head_dim)
        positions = torch.tensor([0, 7, 64, 200, 299][:b], device=device)
        want = reference(q, kn, vn, kc.clone(), vc.clone(), positions, head_dim**-0.5)
        kc2, vc2 = kc.clone(), vc.clone()
        got = decode_attention(q, kn, vn, kc2, vc2, positions, length, head_dim**-0.5)
        rows = torch.arange(b, device=device)
        if not (torch.equal(kc2[rows, :, positions], kn) and torch.equal(vc2[rows, :, positions], vn)):
            return "the kernel did not write the new keys and values into the cache"
        err = (got.float() - want.float()).abs().max().item()
        tol = 1e-4 if dtype == torch.float32 else 3e-2
        if not err <= tol:
            return f"the kernel's output differs from the reference by {err:.3g} (tolerance {tol})"
    except Exception as exc:  # a compiler or driver failure: report it, the engine keeps SDPA
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}"
    return None

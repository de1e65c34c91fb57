"""Triton kernels of the static engine's decode attention (imported only where Triton is).

``decode_attention`` in ``triton_attention.py`` is the entry point; see its docstring. Two
kernels: ``_split`` (one program per row, kv head and split of the cache positions: writes the
step's new key and value into the cache, then attends the row's query heads of that kv head to
the split's positions below the row's own length, online softmax in float32) and ``_combine``
(one program per row and kv head: merges the splits by their log-sum-exp). With one split the
first kernel writes the output directly.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _split(
    Q, KN, VN, KC, VC, POS, MO, ML, OUT,
    s_qb, s_qg, s_qh,
    s_knb, s_kng, s_vnb, s_vng,
    s_kb, s_kg, s_kl, s_vb, s_vg, s_vl,
    s_mb, s_mg, s_ms, s_mh,
    s_lb, s_lg, s_ls,
    s_ob, s_og, s_oh,
    scale, split_len,
    GROUPS: tl.constexpr, GROUPS_PAD: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr, DIRECT: tl.constexpr, IEEE: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)  # row offsets of a large cache pass 2**31 elements
    g = tl.program_id(1)
    s = tl.program_id(2)
    pos = tl.load(POS + b).to(tl.int32)
    start = s * split_len
    end = tl.minimum(start + split_len, pos + 1)
    offs_h = tl.arange(0, GROUPS_PAD)
    offs_d = tl.arange(0, D_PAD)
    hmask = offs_h < GROUPS
    dmask = offs_d < D
    kn = tl.load(KN + b * s_knb + g * s_kng + offs_d, mask=dmask, other=0.0)
    vn = tl.load(VN + b * s_vnb + g * s_vng + offs_d, mask=dmask, other=0.0)
    k_row = KC + b * s_kb + g * s_kg
    v_row = VC + b * s_vb + g * s_vg
    if (pos >= start) & (pos < start + split_len):  # this split holds the new position: write it
        tl.store(k_row + pos.to(tl.int64) * s_kl + offs_d, kn, mask=dmask)
        tl.store(v_row + pos.to(tl.int64) * s_vl + offs_d, vn, mask=dmask)
    q = tl.load(Q + b * s_qb + g * s_qg + offs_h[:, None] * s_qh + offs_d[None, :],
                mask=hmask[:, None] & dmask[None, :], other=0.0)
    m = tl.full([GROUPS_PAD], float("-inf"), tl.float32)
    lsum = tl.zeros([GROUPS_PAD], tl.float32)
    acc = tl.zeros([GROUPS_PAD, D_PAD], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        nmask = offs_n < end
        here = (offs_n == pos)[:, None]  # the position just written: take it from registers
        k = tl.load(k_row + offs_n[:, None] * s_kl + offs_d[None, :], mask=nmask[:, None] & dmask[None, :], other=0.0)
        k = tl.where(here, kn[None, :], k)
        if IEEE:
            qk = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            qk = tl.dot(q, tl.trans(k))
        qk = tl.where(nmask[None, :], qk * scale, float("-inf"))
        m_new = tl.maximum(m, tl.max(qk, 1))
        alpha = tl.exp(m - m_new)
        p = tl.exp(qk - m_new[:, None])
        lsum = lsum * alpha + tl.sum(p, 1)
        v = tl.load(v_row + offs_n[:, None] * s_vl + offs_d[None, :], mask=nmask[:, None] & dmask[None, :], other=0.0)
        v = tl.where(here, vn[None, :], v)
        if IEEE:
            pv = tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            pv = tl.dot(p.to(v.dtype), v)
        acc = acc * alpha[:, None] + pv
        m = m_new
    full = lsum > 0
    o = acc / tl.where(full, lsum, 1.0)[:, None]
    omask = hmask[:, None] & dmask[None, :]
    if DIRECT:
        tl.store(OUT + b * s_ob + g * s_og + offs_h[:, None] * s_oh + offs_d[None, :],
                 o.to(OUT.dtype.element_ty), mask=omask)
    else:
        tl.store(MO + b * s_mb + g * s_mg + s * s_ms + offs_h[:, None] * s_mh + offs_d[None, :], o, mask=omask)
        lse = tl.where(full, m + tl.log(tl.where(full, lsum, 1.0)), float("-inf"))
        tl.store(ML + b * s_lb + g * s_lg + s * s_ls + offs_h, lse, mask=hmask)


@triton.jit
def _combine(
    MO, ML, OUT,
    s_mb, s_mg, s_ms, s_mh,
    s_lb, s_lg, s_ls,
    s_ob, s_og, s_oh,
    splits,
    GROUPS: tl.constexpr, GROUPS_PAD: tl.constexpr, D: tl.constexpr, D_PAD: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1)
    offs_h = tl.arange(0, GROUPS_PAD)
    offs_d = tl.arange(0, D_PAD)
    hmask = offs_h < GROUPS
    omask = hmask[:, None] & (offs_d < D)[None, :]
    mo = MO + b * s_mb + g * s_mg + offs_h[:, None] * s_mh + offs_d[None, :]
    ml = ML + b * s_lb + g * s_lg + offs_h
    # Split 0 always holds position 0, so its log-sum-exp is finite: start from it.
    m = tl.load(ml, mask=hmask, other=0.0)
    acc = tl.load(mo, mask=omask, other=0.0)
    wsum = tl.full([GROUPS_PAD], 1.0, tl.float32)
    for s in range(1, splits):
        lse = tl.load(ml + s * s_ls, mask=hmask, other=float("-inf"))
        o = tl.load(mo + s * s_ms, mask=omask, other=0.0)
        m_new = tl.maximum(m, lse)
        alpha = tl.exp(m - m_new)
        w = tl.exp(lse - m_new)
        acc = acc * alpha[:, None] + o * w[:, None]
        wsum = wsum * alpha + w
        m = m_new
    out = acc / wsum[:, None]
    tl.store(OUT + b * s_ob + g * s_og + offs_h[:, None] * s_oh + offs_d[None, :],
             out.to(OUT.dtype.element_ty), mask=omask)

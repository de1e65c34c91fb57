"""Loss reductions: a per-token loss ``(B, R)`` becomes one scalar.

Chosen by ``[algorithm] loss_reduction`` (and, per term, ``[algorithm.kl] reduction``,
``[algorithm] entropy_reduction`` and ``value_reduction``). Two families:

* ``REDUCTIONS`` (``token_mean``, ``sequence_mean``, ``seq_mean_token_sum_norm``) need only
  the totals of the whole *mini-batch* (``num_tokens``, ``num_sequences``: ``LossScale`` in
  ``skyrl_core.protocols.strategy``), which every strategy hands its loss function: each
  micro-batch's loss is then its share of the mini-batch loss, so reducing every micro-batch
  separately and summing (gradient accumulation) gives exactly the loss of the mini-batch
  reduced at once.
* ``MINIBATCH_REDUCTIONS`` (``prompt_mean``, ``token_mean_legacy``) depend on how the
  mini-batch is made up (its prompt groups, its order), which a micro-batch cannot see. The
  loop computes per-token weights over the whole mini-batch once (``reduction_weights``) and
  stores them in the batch (``weights_key(mode)``); each micro-batch's loss is then
  ``sum(weights * loss)`` over its tokens, and accumulation again gives the mini-batch loss.
  The same weights carry SkyRL's convention for fully masked sequences
  (``[algorithm] empty_sequences = "count"``) into ``sequence_mean`` and
  ``seq_mean_token_sum_norm``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from skyrl_core.algorithms.masked import masked_sum

LossReduction = Literal[
    "token_mean", "sequence_mean", "seq_mean_token_sum_norm", "prompt_mean", "token_mean_legacy"
]
REDUCTIONS: tuple[str, ...] = ("token_mean", "sequence_mean", "seq_mean_token_sum_norm")
"""The reductions computed from the mini-batch totals alone."""
MINIBATCH_REDUCTIONS: tuple[str, ...] = ("prompt_mean", "token_mean_legacy")
"""The reductions that need per-token weights over the whole mini-batch (``reduction_weights``)."""
ALL_REDUCTIONS: tuple[str, ...] = REDUCTIONS + MINIBATCH_REDUCTIONS
EmptySequences = Literal["drop", "count"]


def count_tokens(mask: Tensor) -> float:
    """Loss tokens in ``mask`` (``LossScale.num_tokens``)."""
    return float((mask > 0).sum().item())


def count_sequences(mask: Tensor) -> float:
    """Rows of ``mask`` with at least one loss token (``LossScale.num_sequences``)."""
    return float((mask > 0).any(dim=-1).sum().item())


def _divide(total: Tensor, denominator: float | Tensor) -> Tensor:
    denominator = torch.as_tensor(denominator, dtype=total.dtype, device=total.device)
    return torch.where(denominator > 0, total / denominator.clamp_min(1e-12), total * 0.0)


def reduce_loss(
    token_loss: Tensor,
    mask: Tensor,
    mode: LossReduction | str,
    *,
    num_tokens: float | Tensor | None = None,
    num_sequences: float | Tensor | None = None,
    norm_tokens: float | None = None,
    weights: Tensor | None = None,
) -> Tensor:
    """Reduce a per-token loss to a scalar.

    Args:
        token_loss: ``(B, R)`` per-token loss (e.g. ``PolicyLossOutput.token_loss``).
        mask: ``(B, R)`` loss mask: 1 on tokens that count, 0 on padding and environment
            tokens. Masked entries are ignored even if they are NaN.
        mode:
            * ``"token_mean"``: sum of all loss tokens / ``num_tokens``. Every token weighs
              the same, so long responses weigh more (DAPO's token-level loss, Yu et al. 2025).
            * ``"sequence_mean"``: each sequence's token mean, summed / ``num_sequences``.
              Every sequence weighs the same (the original GRPO, Shao et al. 2024).
            * ``"seq_mean_token_sum_norm"``: each sequence's token *sum* divided by the
              constant ``norm_tokens``, summed / ``num_sequences``. Dr. GRPO (Liu et al.
              2025): removes GRPO's length bias without the token-mean's batch coupling.
        num_tokens: loss tokens of the whole mini-batch; default: those of ``mask``.
        num_sequences: sequences of the whole mini-batch with at least one loss token;
            default: those of ``mask``.
        norm_tokens: the constant of ``seq_mean_token_sum_norm`` (required there), usually
            the longest possible sequence.
        weights: ``(B, R)`` per-token weights from ``reduction_weights`` (cut to these rows);
            when given, the result is ``sum(weights * token_loss)`` over the mask and the
            totals are not used. Required by the ``MINIBATCH_REDUCTIONS``:

            * ``"prompt_mean"``: the token mean of each prompt group (all the samples of one
              prompt), averaged over the groups of the mini-batch: every prompt weighs the
              same, however long its answers (NovaSky's SkyRL);
            * ``"token_mean_legacy"``: the token mean of each run of
              ``micro_batch_sequences`` consecutive sequences, averaged over the runs:
              classic SkyRL-train's ``token_mean`` with its micro-batches.

    Returns:
        A scalar tensor carrying ``token_loss``'s gradient. 0 (still differentiable) when
        there is nothing to average, never NaN.
    """
    if token_loss.shape != mask.shape or token_loss.dim() != 2:
        raise ValueError(
            f"reduce_loss: token_loss {tuple(token_loss.shape)} and mask {tuple(mask.shape)} must both be (B, R)"
        )
    on = (mask > 0).to(token_loss.dtype)
    if weights is not None:
        if weights.shape != token_loss.shape:
            raise ValueError(
                f"reduce_loss: weights {tuple(weights.shape)} must match token_loss {tuple(token_loss.shape)}"
            )
        return masked_sum(token_loss * weights.detach().to(token_loss.dtype), on)
    if mode in MINIBATCH_REDUCTIONS:
        raise ValueError(
            f"reduce_loss: mode {mode!r} needs per-token weights over the whole mini-batch; compute them with "
            "reduction_weights(mask, mode, group_ids=..., ...) and pass them as weights="
        )
    weights = on
    if mode == "token_mean":
        total = masked_sum(token_loss, weights)
        return _divide(total, num_tokens if num_tokens is not None else weights.sum())
    if mode not in ("sequence_mean", "seq_mean_token_sum_norm"):
        raise ValueError(f"reduce_loss: unknown mode {mode!r}; choose one of {', '.join(ALL_REDUCTIONS)}")
    seq_sums = masked_sum(token_loss, weights, dim=-1)
    if mode == "sequence_mean":
        per_seq = _divide(seq_sums, weights.sum(dim=-1))
    else:
        if norm_tokens is None or norm_tokens <= 0:
            raise ValueError(
                "reduce_loss: mode 'seq_mean_token_sum_norm' needs norm_tokens > 0 (the constant each "
                f"sequence's token sum is divided by), got {norm_tokens!r}; set [algorithm] loss_norm_tokens"
            )
        per_seq = seq_sums / float(norm_tokens)
    if num_sequences is None:
        num_sequences = (weights.sum(dim=-1) > 0).to(token_loss.dtype).sum()
    return _divide(per_seq.sum(), num_sequences)


# -- per-token weights over a whole mini-batch ------------------------------------------------


def weights_key(mode: str) -> str:
    """The ``TrainBatch.tensors`` key under which the loop stores ``mode``'s weights."""
    return f"reduce_weights/{mode}"


def needs_weights(mode: str, empty_sequences: EmptySequences | str = "drop") -> bool:
    """Whether ``mode`` is computed from ``reduction_weights`` rather than the mini-batch totals:
    always for the ``MINIBATCH_REDUCTIONS``, and for the per-sequence means when fully masked
    sequences still count (``empty_sequences = "count"``)."""
    if mode in MINIBATCH_REDUCTIONS:
        return True
    return empty_sequences == "count" and mode in ("sequence_mean", "seq_mean_token_sum_norm")


def reduction_weights(
    mask: Tensor,
    mode: LossReduction | str,
    *,
    group_ids: Tensor | None = None,
    micro_batch_sequences: int = 1,
    norm_tokens: float | None = None,
    empty_sequences: EmptySequences | str = "drop",
) -> Tensor:
    """Per-token weights ``w`` of a whole mini-batch: ``sum(w * token_loss)`` over the mask is its loss.

    Args:
        mask: ``(B, R)`` loss mask of the mini-batch, rows in the mini-batch's order.
        mode: any reduction (``ALL_REDUCTIONS``); see ``reduce_loss``. With ``N`` the tokens of
            the unit, the weight of a token is ``1 / N_tokens`` (``token_mean``),
            ``1 / (N_seq · len_i)`` (``sequence_mean``), ``1 / (N_seq · norm_tokens)``
            (``seq_mean_token_sum_norm``), ``1 / (N_prompts · tokens of its prompt group)``
            (``prompt_mean``) or ``1 / (N_runs · tokens of its run)`` (``token_mean_legacy``).
        group_ids: ``(B,)`` prompt group of each row (``prompt_mean``).
        micro_batch_sequences: the size of the runs of ``token_mean_legacy``: rows
            ``[0, m)``, ``[m, 2m)``, ... (the last run may be shorter).
        norm_tokens: the constant of ``seq_mean_token_sum_norm``.
        empty_sequences: whether a sequence (prompt group, run) without loss tokens counts in
            ``N_seq`` (``N_prompts``, ``N_runs``): ``"drop"`` (it does not; skyrl's default) or
            ``"count"`` (it does, contributing 0: SkyRL-train's convention).

    Returns:
        ``(B, R)`` float32, 0 off the mask. All zeros when the mask is empty.
    """
    if mask.dim() != 2:
        raise ValueError(f"reduction_weights: mask must be (B, R), got {tuple(mask.shape)}")
    on = (mask > 0).to(torch.float32)
    lengths = on.sum(dim=-1)
    has = lengths > 0
    count_empty = empty_sequences == "count"

    def inverse(x: Tensor) -> Tensor:
        return torch.where(x > 0, 1.0 / x.clamp_min(1e-12), torch.zeros_like(x))

    rows = float(mask.shape[0])
    if mode == "token_mean":
        per_row = inverse(lengths.sum()).expand_as(lengths)
    elif mode == "sequence_mean":
        n_seq = torch.tensor(rows) if count_empty else has.sum().to(torch.float32)
        per_row = inverse(lengths) * inverse(n_seq)
    elif mode == "seq_mean_token_sum_norm":
        if norm_tokens is None or norm_tokens <= 0:
            raise ValueError(f"reduction_weights: 'seq_mean_token_sum_norm' needs norm_tokens > 0, got {norm_tokens!r}")
        n_seq = torch.tensor(rows) if count_empty else has.sum().to(torch.float32)
        per_row = torch.where(has, inverse(n_seq) / float(norm_tokens), torch.zeros_like(lengths))
    elif mode in MINIBATCH_REDUCTIONS:
        if mode == "prompt_mean":
            if group_ids is None or group_ids.shape != (mask.shape[0],):
                raise ValueError("reduction_weights: 'prompt_mean' needs group_ids of shape (B,), one per row")
            _, unit = torch.unique(group_ids.to(mask.device), return_inverse=True)
        else:
            if micro_batch_sequences < 1:
                raise ValueError(f"reduction_weights: micro_batch_sequences must be >= 1, got {micro_batch_sequences}")
            unit = torch.arange(mask.shape[0], device=mask.device) // micro_batch_sequences
        n_units = int(unit.max()) + 1 if unit.numel() else 0
        unit_tokens = torch.zeros(n_units).index_add_(0, unit.cpu(), lengths.cpu()).to(lengths.device)
        counted = float(n_units) if count_empty else float((unit_tokens > 0).sum())
        per_row = inverse(unit_tokens)[unit] * inverse(torch.tensor(counted))
    else:
        raise ValueError(f"reduction_weights: unknown mode {mode!r}; choose one of {', '.join(ALL_REDUCTIONS)}")
    return per_row[:, None] * on

"""Splitting a mini-batch into micro-batches by token budget, and the mini-batch's loss totals.

Both strategies plan their passes with ``pack_by_token_budget`` (``fsdp2`` per rank, on each
rank's share of the batch) and hand every micro-batch's loss the whole mini-batch's
``loss_scale``, so that gradient accumulation over micro-batches (and ranks) gives the
gradient of the mini-batch loss.
"""

from __future__ import annotations

from collections.abc import Sequence

from skyrl_core.protocols.strategy import LossScale, TrainBatch


def pack_by_token_budget(
    lengths: Sequence[int], budget: int, *, sort: bool = True, packed: bool = False, row_width: int | None = None
) -> list[list[int]]:
    """Group sequence indices into micro-batches whose size stays within ``budget`` tokens.

    The size of a group is its *padded* size ``len(group) * max(lengths[group])`` (what a
    right-padded ``(b, L)`` tensor holds), or with ``packed`` the size of the rows
    ``collate(..., packed=True, row_width=...)`` lays its sequences into (``pack_rows``: rows
    as wide as the group's longest sequence or ``row_width`` if wider, filled first-fit).
    Grouping is greedy: with ``sort`` (always when ``packed``) the sequences are taken
    longest first (least padding), otherwise in their given order. A sequence longer than
    the budget forms a micro-batch of its own.

    Returns:
        Lists of indices into ``lengths``; every index appears exactly once.
    """
    if budget <= 0:
        raise ValueError(f"micro-batch token budget must be > 0, got {budget}")
    if packed:
        return _pack_groups(lengths, budget, row_width or 0)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else list(range(len(lengths)))
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = lengths[i]
        if current and (len(current) + 1) * max(longest, n) > budget:
            groups.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, n)
    if current:
        groups.append(current)
    return groups


def _pack_groups(lengths: Sequence[int], budget: int, row_width: int) -> list[list[int]]:
    """``pack_by_token_budget(packed=True)``: longest first; a sequence joins the current group
    while the group's rows (first fit, as wide as its first sequence or ``row_width``) stay
    within ``budget``."""
    groups: list[list[int]] = []
    current: list[int] = []
    width = 0
    free: list[int] = []  # room left in each row of the current group
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = max(lengths[i], 1)
        row = next((r for r, room in enumerate(free) if n <= room), None)
        if current and row is None and (len(free) + 1) * width > budget:
            groups.append(current)
            current, free = [], []
        if not current:
            width = max(n, row_width)
        if row is None or not free:
            free.append(width - n)
        else:
            free[row] -= n
        current.append(i)
    if current:
        groups.append(current)
    return groups


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """First-fit decreasing: sequence indices laid into rows of ``width`` tokens.

    Every sequence must fit a row (``max(lengths) <= width``); rows keep their sequences in
    the order they were placed (longest first)."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = lengths[i]
        if n > width:
            raise ValueError(f"sequence {i} has {n} tokens, more than the row width {width}")
        for r, room in enumerate(free):
            if n <= room:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(width - n)
    return rows


def loss_scale(batch: TrainBatch) -> LossScale:
    """The mini-batch totals handed to a ``LossFn`` (from ``batch.tensors["loss_mask"]``)."""
    mask = batch.tensors.get("loss_mask")
    if mask is None:
        raise KeyError("TrainBatch.tensors has no 'loss_mask': the loop must provide it for every batch")
    per_seq = mask.float().sum(dim=1)
    return LossScale(num_tokens=float(per_seq.sum()), num_sequences=float((per_seq > 0).sum()))

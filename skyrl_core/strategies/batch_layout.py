"""How a micro-batch of sequences is laid out as ``(b, L)`` model inputs.

``collate`` turns a ``TrainBatch`` (prompt and response token ids) into the input tensors
of a Hugging Face model, right-padded or packed several sequences to a row
(``[strategy] packing``), and indexes the response tokens so that per-token results can be
scattered back to ``(B, R)``. The packing probe checks at start-up that a model's attention
keeps packed sequences apart; ``check_packing_width`` checks the packing options against the
micro-batch budgets.
"""

from __future__ import annotations

from typing import Any

import attrs
import torch
from torch import Tensor, nn

from skyrl_core.errors import DataError, SkyrlError
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.strategies.micro_batching import pack_rows
from skyrl_core.strategies.shared_prefix import SharedPrefix, shared_layout


@attrs.frozen
class Collated:
    """A micro-batch of ``B`` sequences laid out as ``(b, L)`` model inputs.

    Right-padded (``collate``'s default): row ``i`` holds sequence ``i``, ``b = B``, ``L`` is
    the longest sequence. Packed (``packed=True``): several sequences share a row, each with
    position ids restarting at 0 and no attention mask, so Hugging Face models attend within
    each sequence only (transformers derives a block-diagonal causal mask from the position
    ids); no compute goes to padding beyond the tails of the rows.

    Attributes:
        input_ids: ``(b, L)`` prompt + response ids, padded with ``pad_id``.
        attention_mask: ``(b, L)`` 1 on real tokens (unused when packed).
        position_ids: ``(b, L)`` ``0..L-1`` on every row, or restarting at every sequence.
        rows: ``(N,)`` row of each of the ``N`` response tokens of the micro-batch.
        cols: ``(N,)`` position whose hidden state predicts that token.
        targets: ``(N,)`` the response token ids.
        slots: ``(N,)`` index ``j`` of the token within its response, for scattering
            per-token results back to ``(B, R)``.
        seqs: ``(N,)`` index of the token's sequence in the micro-batch (``rows`` unless packed).
        num_seqs: ``B``.
        response_len: ``R``, the longest response of the micro-batch.
        padded: whether any row is shorter than ``L`` (and so needs the attention mask).
        packed: whether rows hold several sequences.
        prefix: the same micro-batch in the shared-prompt layout (``collate(shared_prefix=True)``
            when sequences share prompts; ``skyrl_core.strategies.shared_prefix``), which gives the
            same outputs for fewer token positions; None otherwise. The plain inputs above are
            always complete, so a consumer that ignores it stays correct.
    """

    input_ids: Tensor
    attention_mask: Tensor
    position_ids: Tensor
    rows: Tensor
    cols: Tensor
    targets: Tensor
    slots: Tensor
    seqs: Tensor
    num_seqs: int
    response_len: int
    padded: bool = True
    packed: bool = False
    prefix: SharedPrefix | None = None

    def model_inputs(self) -> dict[str, Tensor | None]:
        """Keyword arguments for a Hugging Face model. Without padding, and when packed, the mask
        is left out: attention takes its plain causal path (flash kernels), or the block-diagonal
        mask transformers builds from the position ids."""
        mask = self.attention_mask if self.padded and not self.packed else None
        return {"input_ids": self.input_ids, "attention_mask": mask, "position_ids": self.position_ids}

    def scatter(self, values: Tensor) -> Tensor:
        """Place per-token ``values`` ``(N,)`` into a ``(B, R)`` float tensor, 0 elsewhere."""
        out = torch.zeros(self.num_seqs, self.response_len, dtype=torch.float32, device=values.device)
        out[self.seqs, self.slots] = values.float()
        return out


def collate(
    batch: TrainBatch,
    device: torch.device | str,
    *,
    pad_id: int = 0,
    packed: bool = False,
    row_width: int | None = None,
    shared_prefix: bool = False,
) -> Collated:
    """Lay out ``prompt + response`` of every sequence and index the response tokens.

    Right-padded by default; with ``packed`` the sequences are laid into rows as wide as the
    longest one, or ``row_width`` when wider (first-fit decreasing, ``pack_rows``), each with
    its own position ids. With ``shared_prefix`` (and not packed), ``Collated.prefix`` also
    holds the shared-prompt layout when two sequences with responses share their prompt.

    Raises:
        DataError: when a sequence with a response has an empty prompt (its first token
            would have nothing to be predicted from).
    """
    seqs = [list(p) + list(r) for p, r in zip(batch.prompt_ids, batch.response_ids, strict=True)]
    for i, (prompt, response) in enumerate(zip(batch.prompt_ids, batch.response_ids, strict=True)):
        if response and not prompt:
            raise DataError(
                f"sequence {i} of the batch has an empty prompt: its first response token has no context to be "
                "scored from; give every sample at least one prompt token (e.g. a BOS token)"
            )
    width = max((len(s) for s in seqs), default=0)
    width = max(width, 1, row_width or 0) if packed else width
    layout = pack_rows([max(len(s), 1) for s in seqs], width) if packed else [[i] for i in range(len(seqs))]
    ids = torch.full((len(layout), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(layout), width), dtype=torch.long)
    positions = torch.zeros((len(layout), width), dtype=torch.long)
    rows: list[int] = []
    cols: list[int] = []
    slots: list[int] = []
    seq_of: list[int] = []
    targets: list[int] = []
    padded = False
    for r, members in enumerate(layout):
        offset = 0
        for i in members:
            prompt, response, n = batch.prompt_ids[i], batch.response_ids[i], len(seqs[i])
            ids[r, offset : offset + n] = torch.tensor(seqs[i], dtype=torch.long)
            positions[r, offset : offset + max(n, 1)] = torch.arange(max(n, 1))
            start = offset + len(prompt) - 1
            rows.extend([r] * len(response))
            cols.extend(range(start, start + len(response)))
            slots.extend(range(len(response)))
            seq_of.extend([i] * len(response))
            targets.extend(response)
            offset += max(n, 1) if packed else n
        attn[r, : max(offset, 1)] = 1  # an empty row attends to one pad token, never to nothing (NaN)
        if offset < width:
            padded = True
            # the tail: its own segment when packed, plain positions otherwise (masked out)
            positions[r, offset:] = torch.arange(width - offset) if packed else torch.arange(offset, width)

    def t(x: list[int]) -> Tensor:
        return torch.tensor(x, dtype=torch.long, device=device)

    return Collated(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=positions.to(device),
        rows=t(rows),
        cols=t(cols),
        targets=t(targets),
        slots=t(slots),
        seqs=t(seq_of),
        num_seqs=len(seqs),
        response_len=batch.response_len,
        padded=padded,
        packed=packed,
        prefix=shared_layout(batch, device, pad_id=pad_id) if shared_prefix and not packed else None,
    )


def logits_probe(vocab: int) -> TrainBatch:
    """Two short sequences on which ``[strategy] logits = 'auto'`` compares the LM head on gathered
    hidden states ('sliced') with the model's own logits ('full')."""
    return TrainBatch([[1, 2, 3], [4 % vocab]], [[5 % vocab, 6 % vocab], [7 % vocab, 8 % vocab, 9 % vocab]])


def packing_probe(vocab: int) -> TrainBatch:
    """Three short sequences that ``collate(packed=True)`` lays into two rows (5 | 3 + 2 tokens):
    packed log-probs equal padded ones only if attention keeps the sequences of a row apart."""
    return TrainBatch([[1, 2, 3], [4 % vocab], [2]], [[5 % vocab, 6 % vocab], [7 % vocab, 8 % vocab], [9 % vocab]])


def packing_agrees(padded: Tensor, packed: Tensor, *, low_precision: bool) -> bool:
    """Whether the probe's packed log-probs ``(B, R)`` match the padded ones (bf16/fp16 kernels
    differ by rounding; sequences that see each other differ by far more)."""
    tol = 2e-2 if low_precision else 1e-3
    return bool(torch.allclose(padded.float(), packed.float(), rtol=tol, atol=tol))


def packing_error(model: nn.Module) -> SkyrlError:
    """The start-up error for a model whose attention mixes packed sequences."""
    inner = getattr(model, "config", None)
    attn = getattr(inner, "_attn_implementation", "?")
    return SkyrlError(
        f"[strategy] packing = true: {type(model).__name__} (attn_implementation {attn!r}) does not keep packed "
        "sequences apart (its attention ignores restarting position ids, e.g. flash attention with several rows "
        "per micro-batch); set [strategy] packing = false or [model] attn_implementation = 'sdpa'"
    )


def check_packing_width(config: Any, trainer: Any) -> None:
    """``packing_width`` must fit the micro-batch budgets (a row is the smallest micro-batch)."""
    width = getattr(config, "packing_width", None)
    if not getattr(config, "packing", False) or width is None:
        return
    budgets = {"trainer.micro_batch_tokens": trainer.micro_batch_tokens}
    if config.forward_micro_batch_tokens is not None:
        budgets["strategy.forward_micro_batch_tokens"] = config.forward_micro_batch_tokens
    for key, budget in budgets.items():
        if width > budget:
            raise SkyrlError(
                f"[strategy] packing_width = {width} is wider than {key} = {budget}: every micro-batch would "
                f"exceed its budget; lower packing_width to at most {budget} or raise {key}"
            )


def to_device(batch: TrainBatch, device: torch.device | str) -> TrainBatch:
    """The same batch with its tensors moved to ``device``."""
    return TrainBatch(batch.prompt_ids, batch.response_ids, {k: v.to(device) for k, v in batch.tensors.items()})

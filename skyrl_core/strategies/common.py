"""Pieces shared by training strategies (``local`` today, ``fsdp2`` next).

Nothing here owns a model: micro-batch packing by token budget, collation of a
``TrainBatch`` into padded input tensors, the learning-rate schedule, AdamW construction,
pinned-memory offload, model surgery (critic head, dropout, checkpointing, tied-weight
dedup), RNG state capture, checkpoint file names and the supervised (cross-entropy) loss
used by ``skyrl sft`` and the warm start.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from skyrl_core.errors import DataError, SkyrlError
from skyrl_core.protocols.strategy import ForwardOutput, LossFn, LossScale, TrainBatch


class CheckpointError(SkyrlError, FileNotFoundError):
    """A checkpoint directory is missing or incomplete."""

# -- checkpoint file names -------------------------------------------------------------------

POLICY_WEIGHTS = "model.safetensors"
POLICY_OPTIMIZER = "optimizer.pt"
POLICY_SCHEDULER = "scheduler.pt"
REF_WEIGHTS = "ref.safetensors"
CRITIC_WEIGHTS = "critic.safetensors"
CRITIC_OPTIMIZER = "critic_optimizer.pt"
CRITIC_SCHEDULER = "critic_scheduler.pt"
GRAD_SCALER = "grad_scaler.pt"
RNG_STATE = "rng.pt"
STRATEGY_STATE = "strategy.json"


# -- micro-batches ---------------------------------------------------------------------------


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


# -- collation -------------------------------------------------------------------------------


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
) -> Collated:
    """Lay out ``prompt + response`` of every sequence and index the response tokens.

    Right-padded by default; with ``packed`` the sequences are laid into rows as wide as the
    longest one, or ``row_width`` when wider (first-fit decreasing, ``pack_rows``), each with
    its own position ids.

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
    )


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


def effective_temperature(temperature: float) -> float:
    """The divisor the sampler applied: greedy decoding (0) reports raw log-softmax, so it is 1."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    return 1.0 if temperature == 0 else float(temperature)


def to_device(batch: TrainBatch, device: torch.device | str) -> TrainBatch:
    """The same batch with its tensors moved to ``device``."""
    return TrainBatch(batch.prompt_ids, batch.response_ids, {k: v.to(device) for k, v in batch.tensors.items()})


# -- learning-rate schedule and optimizer ----------------------------------------------------


def lr_multiplier(step: int, *, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """Factor of the peak learning rate used by optimizer step ``step`` (0-based).

    Warmup is linear: step ``s < warmup_steps`` uses ``(s + 1) / warmup_steps``, so the first
    update is not wasted at lr 0 and step ``warmup_steps - 1`` reaches the peak. Afterwards,
    with ``progress = (s - warmup) / (total - warmup)`` clipped to ``[0, 1]``: ``constant``
    stays at 1, ``linear`` is ``1 - progress``, ``cosine`` is ``(1 + cos(pi * progress)) / 2``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(max((step - warmup_steps) / max(1, total_steps - warmup_steps), 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"[trainer] lr_schedule = {schedule!r}: unknown schedule; use 'constant', 'cosine' or 'linear'")


def build_scheduler(
    optimizer: torch.optim.Optimizer, *, schedule: str, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following ``lr_multiplier``; call ``step()`` once per optimizer step."""
    lr_multiplier(0, schedule=schedule, warmup_steps=warmup_steps, total_steps=total_steps)  # validate early

    def factor(step: int) -> float:
        return lr_multiplier(step, schedule=schedule, warmup_steps=warmup_steps, total_steps=total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_adamw(
    params: Iterable[Tensor],
    *,
    lr: float,
    betas: Sequence[float],
    weight_decay: float,
    device: torch.device,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``params``; the fused kernel on CUDA unless ``fused`` says otherwise
    (sharded ``DTensor`` parameters use the multi-tensor ``foreach`` kernel)."""
    if len(betas) != 2:
        raise SkyrlError(f"[trainer] betas = {list(betas)!r}: AdamW needs exactly two values, e.g. [0.9, 0.999]")
    return torch.optim.AdamW(
        list(params),
        lr=lr,
        betas=(float(betas[0]), float(betas[1])),
        weight_decay=weight_decay,
        fused=device.type == "cuda" if fused is None else fused,
    )


class HostOffloader:
    """Moves modules and optimizer states between an accelerator and reusable pinned host memory.

    Each tensor gets one pinned host buffer, allocated at its first offload and reused by
    every later one: copies into pinned memory run at full bus speed, whereas a fresh
    pageable allocation per offload is several times slower (first-touch page faults). The
    buffers stay allocated while the tensors are on the device (host memory is traded for
    offload speed). Parameters keep their identity (``param.data`` is swapped), so
    optimizers keep pointing at them.
    """

    def __init__(self) -> None:
        self._host: dict[tuple[Any, ...], Tensor] = {}

    def _to_host(self, key: tuple[Any, ...], tensor: Tensor) -> Tensor:
        buf = self._host.get(key)
        if buf is None or buf.shape != tensor.shape or buf.dtype != tensor.dtype:
            buf = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host[key] = buf
        buf.copy_(tensor, non_blocking=True)
        return buf

    def offload(self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Copy every parameter, buffer and optimizer-state tensor into pinned host memory."""
        self._move(modules, optimizers, lambda key, t: self._to_host(key, t) if t.device.type != "cpu" else t)
        torch.cuda.synchronize()

    def onload(
        self, modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer], device: torch.device
    ) -> None:
        """Copy everything back to ``device`` (the pinned buffers are kept for the next offload)."""
        self._move(modules, optimizers, lambda key, t: t.to(device, non_blocking=True))
        torch.cuda.synchronize()

    @staticmethod
    def _move(modules: Iterable[nn.Module], optimizers: Iterable[torch.optim.Optimizer], move: Any) -> None:
        for module in modules:
            for param in module.parameters():
                param.grad = None
                param.data = move(("param", id(param)), param.data)
            for owner in module.modules():
                for name, buf in owner._buffers.items():
                    if buf is not None:
                        owner._buffers[name] = move(("buffer", id(owner), name), buf)
        for optimizer in optimizers:
            for param, state in optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        state[key] = move(("state", id(param), key), value)


# -- models ----------------------------------------------------------------------------------


class ValueModel(nn.Module):
    """A critic: a causal-LM transformer body (``backbone``) plus a scalar ``head``.

    The strategy calls the two parts itself: ``head(backbone(...).last_hidden_state)`` maps
    hidden states ``(..., H)`` to values ``(..., 1)``.
    """

    def __init__(self, body: nn.Module, width: int, generator: torch.Generator) -> None:
        super().__init__()
        self.backbone = body
        self.head = nn.Linear(width, 1)
        with torch.no_grad():
            # Small weights so that initial values sit near 0 whatever the hidden-state scale.
            std = 1.0 / (width + 1)
            weight = torch.randn(self.head.weight.shape, generator=generator) * std
            self.head.weight.copy_(weight.to(self.head.weight.device))
            self.head.bias.zero_()


def backbone(model: nn.Module) -> nn.Module | None:
    """The transformer body of a causal LM (``model.model`` for most), or None."""
    body = getattr(model, "base_model", None)
    return body if isinstance(body, nn.Module) and body is not model else None


def hidden_size(model: nn.Module) -> int:
    """The width of ``model``'s hidden states (from its config, or its text config)."""
    config = model.config
    size = getattr(config, "hidden_size", None)
    if size is None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "hidden_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__}: config has no hidden_size; cannot size the critic's value head")
    return int(size)


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability in ``model`` to 0 (``nn.Dropout`` and HF attention dropout)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for attr in ("attention_dropout", "dropout_p"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)


def enable_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing of a Hugging Face model (active in train mode only)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def unique_state(module: nn.Module) -> list[tuple[str, Tensor]]:
    """``module.state_dict()`` items (detached), each storage once under its first name."""
    seen: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()
    items = []
    for name, tensor in module.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()))
        if key not in seen:
            seen.add(key)
            items.append((name, tensor.detach()))
    return items


# -- RNG state -------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Python, numpy (when installed), torch and CUDA generator states."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, cached = np.random.get_state()
        # Tensors and plain numbers only, so the file loads with ``torch.load(weights_only=True)``.
        state["numpy"] = (kind, torch.from_numpy(keys.copy()), int(pos), int(has_gauss), float(cached))
    except ImportError:  # pragma: no cover - numpy ships with torch installs
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` captured (CUDA only when both sides have it)."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy(), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- files -----------------------------------------------------------------------------------


def require_files(directory: Path, files: Sequence[tuple[str, str]]) -> None:
    """Check that every ``(name, what)`` file exists under ``directory``; name all missing ones at once."""
    missing = [f"{name} ({what})" for name, what in files if not (Path(directory) / name).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {directory}: missing {', '.join(missing)}. Was it written by the same strategy with the "
            "same options (reference model / critic)? Point checkpoint.resume at a complete checkpoint directory."
        )


def replace_dir(tmp: Path, dest: Path) -> None:
    """Move the finished directory ``tmp`` to ``dest``, replacing an existing ``dest``.

    ``dest`` is never half-written: the old one is set aside with one rename, the new one
    put in place with another, and only then is the old one deleted.
    """
    tmp, dest = Path(tmp), Path(dest)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


# -- supervised loss -------------------------------------------------------------------------


class SFTLossFn:
    """Cross-entropy on the ``loss_mask`` tokens (a ``LossFn``; see ``sft_loss_fn``).

    A module-level class rather than a closure so that it pickles by reference (the
    ``fsdp2`` strategy rebuilds its loss inside its Ray workers).
    """

    def __call__(self, micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[Tensor, dict[str, float]]:
        if out.logprobs is None:
            raise ValueError("the SFT loss needs log-probs; call train_step with role='policy'")
        mask = micro.tensors["loss_mask"].to(out.logprobs.dtype)
        nll = -(out.logprobs * mask).sum()
        tokens = float(mask.sum())
        loss = nll / max(scale.num_tokens, 1.0)
        return loss, {"loss": float(nll.detach()) / max(tokens, 1.0)}


def sft_loss_fn() -> LossFn:
    """Cross-entropy on the ``loss_mask`` tokens: the mean over every loss token of the mini-batch.

    Each micro-batch contributes ``sum(-logprob * mask) / scale.num_tokens``, so the
    accumulated gradient is that of the mini-batch mean. Its metrics are ``loss`` (the
    micro-batch's mean negative log-likelihood per token, which the strategy's
    token-weighted averaging turns into the mini-batch mean).
    """
    return SFTLossFn()

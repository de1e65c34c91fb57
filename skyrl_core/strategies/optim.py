"""The optimizer side of a trained module: AdamW, the learning-rate schedule, and ``Trainable``.

``build_trainable`` is the one place both strategies build what they train: ``local`` for its
policy and critic (fused AdamW on CUDA, a ``GradScaler`` under fp16 autocast), every
``fsdp2`` worker for its shards (fused AdamW over ``DTensor`` parameters on CUDA where torch
supports it). On CPU both use the multi-tensor ``foreach`` kernel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from skyrl_core.config.schema import TrainerConfig
from skyrl_core.errors import SkyrlError


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
    """AdamW over ``params``; the fused kernel on CUDA (also over sharded ``DTensor`` parameters,
    see ``fused_adamw_on_dtensor``) unless ``fused`` says otherwise, the multi-tensor ``foreach``
    kernel on CPU (where both strategies must give the same weights)."""
    if len(betas) != 2:
        raise SkyrlError(f"[trainer] betas = {list(betas)!r}: AdamW needs exactly two values, e.g. [0.9, 0.999]")
    return torch.optim.AdamW(
        list(params),
        lr=lr,
        betas=(float(betas[0]), float(betas[1])),
        weight_decay=weight_decay,
        fused=device.type == "cuda" if fused is None else fused,
    )


def fused_adamw_on_dtensor(mesh: Any, device: torch.device) -> bool:
    """Whether this torch build's fused AdamW steps ``DTensor`` shards on ``device`` (one tiny step
    on a local shard: no collective, so each rank may ask on its own)."""
    from torch.distributed.tensor import DTensor, Shard

    if device.type != "cuda":
        return False
    try:
        param = nn.Parameter(DTensor.from_local(torch.zeros(2, device=device), mesh, [Shard(0)], run_check=False))
        param.grad = DTensor.from_local(torch.ones(2, device=device), mesh, [Shard(0)], run_check=False)
        torch.optim.AdamW([param], lr=1e-3, fused=True).step()
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return True


@attrs.define(eq=False)
class Trainable:
    """One trained module with its optimizer, LR schedule and (fp16 only) gradient scaler.

    Attributes:
        module: what is trained: ``local``'s policy or ``ValueModel``, or an ``fsdp2`` worker's
            sharded FSDP root.
        optimizer: AdamW over ``params``.
        scheduler: the ``LambdaLR`` of ``build_scheduler``, stepped once per optimizer step.
        scaler: a ``torch.amp.GradScaler`` under fp16 autocast, else None.
        params: the parameters that require gradients (what is clipped and stepped).
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None = None
    params: list[Tensor] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.params = [p for p in self.module.parameters() if p.requires_grad]


def build_trainable(
    module: nn.Module,
    *,
    lr: float,
    trainer: TrainerConfig,
    total_steps: int,
    device: torch.device,
    fused: bool | None = None,
    grad_scaler: bool = False,
) -> Trainable:
    """AdamW (``trainer``'s betas and weight decay, peak ``lr``) over ``module``'s trainable
    parameters, ``trainer``'s LR schedule over ``total_steps`` optimizer steps, and with
    ``grad_scaler`` a ``GradScaler`` for fp16 autocast. ``fused`` as in ``build_adamw``."""
    optimizer = build_adamw(
        (p for p in module.parameters() if p.requires_grad),
        lr=lr,
        betas=trainer.betas,
        weight_decay=trainer.weight_decay,
        device=device,
        fused=fused,
    )
    scheduler = build_scheduler(
        optimizer, schedule=trainer.lr_schedule, warmup_steps=trainer.warmup_steps, total_steps=max(1, total_steps)
    )
    scaler = torch.amp.GradScaler(device.type) if grad_scaler else None
    return Trainable(module, optimizer, scheduler, scaler)

"""One optimizer update of a trained module: the train step both builtin strategies run.

``LocalStrategy.train_step`` and every ``Fsdp2Worker.train_step`` call the same plain
functions; what differs between them is passed in, never subclassed::

    acc = update.accumulate(trained, micro_batches, score, loss_fn, scale)     # forward + backward
    outcome = update.step_optimizer(trained, acc.bad, grad_clip=..., skip_nan=...)  # clip, step, schedule
    if not outcome.stepped_schedule:
        raise update.non_finite_error(role, outcome.bad)
    metrics = update.step_metrics([acc], [outcome], micro_batches=..., tokens=..., role=role)

* ``micro_batches``: the caller's passes, real or dummy (``MicroBatch.real = False``: an
  ``fsdp2`` rank with fewer micro-batches runs zero-loss passes, since every forward and
  backward is a sequence of collectives all ranks must join);
* ``score``: how a micro-batch becomes a ``ForwardOutput`` (``local`` calls its modules,
  ``fsdp2`` its FSDP roots; both through ``token_outputs``);
* ``autocast`` and ``Trainable.scaler``: ``local``'s bf16/fp16 autocast and fp16 loss scaling;
* ``any_rank``: how ranks agree that some rank had a non-finite loss (``fsdp2``: an all-reduce);
* ``full``: how the clipped gradient norm becomes one number (``fsdp2``: gathering a ``DTensor``).

The ``fsdp2`` driver merges its ranks' ``Accumulated``/``StepOutcome`` with the same
``step_metrics`` and raises the same ``non_finite_error``.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import torch
from torch import Tensor

from skyrl_core.protocols.strategy import ForwardOutput, LossFn, LossScale, TrainBatch
from skyrl_core.strategies.optim import Trainable


@attrs.frozen
class MicroBatch:
    """One forward/backward pass of a step.

    Attributes:
        batch: the micro-batch's sequences, tensors on the training device (what the
            ``LossFn`` receives).
        real: False for a dummy pass that only keeps a rank in step with the others: its
            outputs are multiplied by 0, it adds no metrics and no loss tokens.
    """

    batch: TrainBatch
    real: bool = True


Score = Callable[[MicroBatch], ForwardOutput | None]
"""Grad-enabled outputs ``(B, R)`` of a micro-batch, or None when it has nothing to score
(only empty responses: it is skipped)."""


@attrs.frozen
class Accumulated:
    """What the forward/backward passes of one step left besides gradients.

    Attributes:
        sums: each loss metric summed over the micro-batches, weighted by their loss tokens.
        plain: each loss metric summed unweighted (the fallback average when no micro-batch
            has a loss token).
        weight: the loss tokens (``loss_mask`` sum) of the micro-batches that ran.
        bad: where the first non-finite loss was, or None.
        fwd_bwd_s: seconds spent in the passes.
        extremes: the loss metrics named ``*_max`` (largest over the micro-batches) and ``*_min``
            (smallest); these are never averaged.
    """

    sums: dict[str, float]
    plain: dict[str, float]
    weight: float
    bad: str | None
    fwd_bwd_s: float
    extremes: dict[str, float] = attrs.field(factory=dict)


def extreme(name: str) -> Callable[[float, float], float] | None:
    """How a loss metric combines over micro-batches and ranks when it is not a weighted mean:
    ``max`` for names ending in ``_max``, ``min`` for ``_min``, else None (token-weighted mean)."""
    return max if name.endswith("_max") else min if name.endswith("_min") else None


@attrs.frozen
class StepOutcome:
    """The optimizer side of one step.

    Attributes:
        grad_norm: the total gradient norm before clipping (NaN when the step was skipped
            before clipping).
        lr: the learning rate the step used (read before the schedule advanced).
        skipped: whether the parameters were left unchanged (non-finite loss or gradient,
            or an fp16 overflow).
        bad: what was non-finite, or None (an fp16 overflow is the scaler's business, not an error).
        stepped_schedule: whether the LR schedule advanced; False exactly when the step must
            raise (``bad`` and not ``skip_nan``).
        optimizer_s: seconds spent here.
    """

    grad_norm: float
    lr: float
    skipped: bool
    bad: str | None
    stepped_schedule: bool
    optimizer_s: float


def accumulate(
    trained: Trainable,
    micro_batches: Iterable[MicroBatch],
    score: Score,
    loss_fn: LossFn,
    scale: LossScale,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    keep_casts: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    stop_at_non_finite: bool = True,
    where: str = "",
) -> Accumulated:
    """Zero ``trained``'s gradients, then run every micro-batch forward and backward.

    Each real micro-batch's loss is ``loss_fn(micro.batch, score(micro), scale)``, with
    ``scale`` the whole mini-batch's totals, so the accumulated gradient is the mini-batch's;
    with ``trained.scaler`` it is scaled before backward (fp16). ``score`` and the loss run
    under ``autocast()``; all the passes run inside one ``keep_casts()`` region, which keeps
    autocast's cast weights from one micro-batch to the next (``local``: a disabled
    ``torch.autocast`` region around them, so each parameter is cast to bf16 once per step, not
    once per micro-batch; backward runs in it, outside autocast, as before).

    A non-finite loss is recorded in ``bad`` (``"micro-batch {k} {where} has loss nan"``);
    with ``stop_at_non_finite`` the passes stop there, without its backward or metrics
    (the step will be skipped anyway), otherwise every pass still runs (``fsdp2``: each
    backward reduce-scatters, so every rank must run all of them).
    """
    trained.optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    sums: dict[str, float] = {}
    plain: dict[str, float] = {}
    extremes: dict[str, float] = {}
    with keep_casts():
        bad, weight_total = _passes(trained, micro_batches, score, loss_fn, scale, autocast, stop_at_non_finite,
                                    where, sums, plain, extremes)
    return Accumulated(sums, plain, weight_total, bad, time.perf_counter() - start, extremes)


def _passes(
    trained: Trainable,
    micro_batches: Iterable[MicroBatch],
    score: Score,
    loss_fn: LossFn,
    scale: LossScale,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    stop_at_non_finite: bool,
    where: str,
    sums: dict[str, float],
    plain: dict[str, float],
    extremes: dict[str, float],
) -> tuple[str | None, float]:
    """``accumulate``'s forward and backward passes; fills the three metric dicts, returns ``(bad, weight)``."""
    weight_total = 0.0
    bad: str | None = None
    for k, micro in enumerate(micro_batches):
        with autocast():
            out = score(micro)
            if out is None:
                continue  # only empty responses: nothing to score, nothing to learn
            loss, metrics = loss_fn(micro.batch, out, scale) if micro.real else (_zero_loss(out), {})
        if micro.real:
            if bad is None and not bool(torch.isfinite(loss.detach()).all()):
                bad = " ".join(filter(None, (f"micro-batch {k}", where, f"has loss {float(loss.detach())}")))
                if stop_at_non_finite:
                    break
            weight = float(micro.batch.tensors["loss_mask"].sum())
            weight_total += weight
            for name, value in metrics.items():
                combine = extreme(name)
                if combine is not None:
                    extremes[name] = combine(extremes[name], float(value)) if name in extremes else float(value)
                    continue
                sums[name] = sums.get(name, 0.0) + float(value) * weight
                plain[name] = plain.get(name, 0.0) + float(value)
        (trained.scaler.scale(loss) if trained.scaler is not None else loss).backward()
    return bad, weight_total


def _zero_loss(out: ForwardOutput) -> Tensor:
    """0 times every output: a dummy pass's loss, whose backward still joins the collectives."""
    return sum(t.sum() for t in (out.logprobs, out.entropy, out.values) if t is not None) * 0.0


def step_optimizer(
    trained: Trainable,
    bad: str | None,
    *,
    grad_clip: float,
    skip_nan: bool,
    any_rank: Callable[[bool], bool] | None = None,
    full: Callable[[Tensor], Tensor] | None = None,
) -> StepOutcome:
    """Clip, step the optimizer (unless something was non-finite), zero the gradients, advance the schedule.

    Args:
        trained: the module, optimizer, schedule and (fp16) scaler.
        bad: ``Accumulated.bad`` of this process.
        grad_clip: the max total gradient norm (``<= 0``: no clipping, the norm is still measured).
        skip_nan: a non-finite loss or gradient norm skips the step and the schedule still
            advances (aligned with the loop's planned step count); otherwise the schedule stays
            and ``stepped_schedule`` is False: the caller raises ``non_finite_error``.
        any_rank: given whether this process had a non-finite loss, whether any rank had
            one (an all-reduce); None for a single process.
        full: turns the norm ``clip_grad_norm_`` returns into a plain tensor (gathering a
            sharded ``DTensor``); None when it already is one.

    With ``trained.scaler`` (fp16), the gradients are unscaled before clipping and the scaler
    decides whether to step (it skips overflowed steps and lowers its scale; ``skipped`` then,
    but not ``bad``).
    """
    start = time.perf_counter()
    skipped = bad is not None
    if any_rank is not None:
        skipped = any_rank(skipped)
        if skipped and bad is None:
            bad = "another rank had a non-finite loss"
    optimizer, scaler = trained.optimizer, trained.scaler
    lr = float(optimizer.param_groups[0]["lr"])
    grad_norm = float("nan")
    if not skipped:
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(trained.params, grad_clip if grad_clip > 0 else math.inf)
        grad_norm = float(full(norm) if full is not None else norm)
        if scaler is not None:
            # fp16: the scaler skips steps whose gradients overflowed and lowers its scale.
            scaler.step(optimizer)
            scaler.update()
            skipped = not math.isfinite(grad_norm)
        elif math.isfinite(grad_norm):
            optimizer.step()
        else:
            skipped = True
            bad = f"gradient norm is {grad_norm}"
    optimizer.zero_grad(set_to_none=True)
    stepped_schedule = bad is None or skip_nan
    if stepped_schedule:
        with warnings.catch_warnings():
            # A skipped step never called optimizer.step(); torch warns about the order then.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            trained.scheduler.step()
    return StepOutcome(grad_norm, lr, skipped, bad, stepped_schedule, time.perf_counter() - start)


def non_finite_error(role: str, bad: str | None) -> FloatingPointError:
    """The error of a step that found a non-finite loss or gradient with ``trainer.skip_nan = false``."""
    return FloatingPointError(
        f"{role} train step: {bad}. Lower trainer.lr, check the loss inputs (advantages, log-probs), "
        "or set trainer.skip_nan = true to skip and report such steps"
    )


def step_metrics(
    parts: Sequence[Accumulated],
    outcomes: Sequence[StepOutcome],
    *,
    micro_batches: int,
    tokens: float,
    role: str,
) -> dict[str, float]:
    """The metrics of one step, from the passes of one process or of every rank.

    Returns:
        The loss function's metrics averaged over micro-batches weighted by their loss tokens
        (a plain average over ``micro_batches`` when there were none; ``*_max`` and ``*_min``
        metrics are the largest and smallest instead), plus ``grad_norm``,
        ``lr`` and ``skipped`` (of ``outcomes[0]``: the ranks agree), ``micro_batches``,
        ``tokens``, and ``fwd_bwd_s`` and ``optimizer_s`` (the slowest part's). For the critic,
        keys without a ``/`` get a ``critic/`` prefix (``critic/grad_norm``, ...), so that callers
        can merge policy and critic metrics of one mini-batch into one dict.
    """
    weight = sum(p.weight for p in parts)
    totals: dict[str, float] = {}
    for part in parts:
        for name, value in (part.sums if weight > 0 else part.plain).items():
            totals[name] = totals.get(name, 0.0) + value
    divisor = weight if weight > 0 else max(micro_batches, 1)
    result = {name: value / divisor for name, value in totals.items()}
    for part in parts:
        for name, value in part.extremes.items():
            combine = extreme(name)
            assert combine is not None
            result[name] = combine(result[name], value) if name in result else value
    first = outcomes[0]
    result.update(
        grad_norm=first.grad_norm,
        lr=first.lr,
        skipped=1.0 if first.skipped else 0.0,
        micro_batches=float(micro_batches),
        tokens=float(tokens),
        fwd_bwd_s=max(p.fwd_bwd_s for p in parts),
        optimizer_s=max(o.optimizer_s for o in outcomes),
    )
    if role == "critic":
        result = {k if "/" in k else f"critic/{k}": v for k, v in result.items()}
    return result

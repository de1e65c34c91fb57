"""The shared train step (``strategies.update``) on a tiny linear model: accumulation, dummy passes,
the non-finite skip, rank agreement, the schedule and the merged metrics."""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from skyrl_core.config.schema import TrainerConfig
from skyrl_core.protocols.strategy import ForwardOutput, LossScale, TrainBatch
from skyrl_core.strategies import update
from skyrl_core.strategies.micro_batching import loss_scale
from skyrl_core.strategies.optim import build_trainable


def micro(rows: int, tokens: int, seed: int) -> TrainBatch:
    """``rows`` sequences of 2 response tokens, ``tokens`` of them in the loss; ``x`` feeds the model."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(rows, 2)
    mask.view(-1)[:tokens] = 1.0
    return TrainBatch([[1]] * rows, [[2, 3]] * rows, {"loss_mask": mask, "x": torch.randn(rows, 2, 3, generator=g)})


def loss_fn(batch: TrainBatch, out: ForwardOutput, scale: LossScale):
    mask = batch.tensors["loss_mask"]
    loss = (out.logprobs**2 * mask).sum() / scale.num_tokens
    return loss, {"m": float(mask.sum()), "l/x": 1.0}


@pytest.fixture
def trained():
    """A ``Linear(3, 1)`` with AdamW (lr 0.1) and a constant schedule, as ``local`` builds it on CPU."""
    torch.manual_seed(0)
    trainer = attrs.evolve(TrainerConfig(), lr=0.1, weight_decay=0.0)
    return build_trainable(torch.nn.Linear(3, 1), lr=0.1, trainer=trainer, total_steps=10, device=torch.device("cpu"))


@pytest.fixture
def score(trained):
    """``update.Score`` of the linear model: one output per response token, in ``logprobs``."""

    def score(m: update.MicroBatch) -> ForwardOutput:
        return ForwardOutput(logprobs=trained.module(m.batch.tensors["x"]).squeeze(-1))

    return score


def test_accumulation_equals_one_pass_and_weights_metrics_by_loss_tokens(trained, score) -> None:
    parts = [micro(2, 3, 0), micro(1, 2, 1)]
    whole = TrainBatch(
        [[1]] * 3, [[2, 3]] * 3, {k: torch.cat([p.tensors[k] for p in parts]) for k in ("loss_mask", "x")}
    )
    scale = loss_scale(whole)
    acc = update.accumulate(trained, [update.MicroBatch(p) for p in parts], score, loss_fn, scale)
    grads = [p.grad.clone() for p in trained.params]
    update.accumulate(trained, [update.MicroBatch(whole)], score, loss_fn, scale)
    for a, b in zip(grads, [p.grad for p in trained.params], strict=True):
        torch.testing.assert_close(a, b)
    assert acc.weight == 5.0 and acc.bad is None
    metrics = update.step_metrics([acc], [update.step_optimizer(trained, None, grad_clip=1.0, skip_nan=True)],
                                  micro_batches=2, tokens=6, role="policy")
    assert metrics["m"] == pytest.approx((3 * 3 + 2 * 2) / 5)  # weighted by each micro-batch's loss tokens
    assert metrics["micro_batches"] == 2.0 and metrics["tokens"] == 6.0 and metrics["skipped"] == 0.0


def test_dummy_passes_and_empty_micro_batches_add_nothing(trained, score) -> None:
    real = micro(2, 4, 0)
    scale = loss_scale(real)
    acc = update.accumulate(trained, [update.MicroBatch(real)], score, loss_fn, scale)
    want = [p.grad.clone() for p in trained.params]
    calls = []

    def maybe_empty(m: update.MicroBatch) -> ForwardOutput | None:
        calls.append(m.real)
        return None if m.batch.tensors["loss_mask"].sum() == 0 and m.real else score(m)

    passes = [update.MicroBatch(real), update.MicroBatch(micro(1, 0, 5)), update.MicroBatch(micro(1, 2, 6), real=False)]
    dummy = update.accumulate(trained, passes, maybe_empty, loss_fn, scale)
    assert calls == [True, True, False]
    assert (dummy.sums, dummy.weight) == (acc.sums, acc.weight)
    for a, p in zip(want, trained.params, strict=True):
        torch.testing.assert_close(p.grad, a)


def test_no_loss_tokens_falls_back_to_the_plain_average(trained, score) -> None:
    passes = [update.MicroBatch(micro(1, 0, 0)), update.MicroBatch(micro(1, 0, 1))]
    acc = update.accumulate(trained, passes, score, loss_fn, LossScale(num_tokens=1.0, num_sequences=1.0))
    outcome = update.step_optimizer(trained, acc.bad, grad_clip=1.0, skip_nan=True)
    metrics = update.step_metrics([acc], [outcome], micro_batches=4, tokens=8, role="critic")
    assert metrics["critic/m"] == 0.0 and metrics["l/x"] == pytest.approx(2 / 4)  # over the planned micro-batches
    assert set(metrics) >= {"critic/grad_norm", "critic/lr", "critic/skipped", "critic/fwd_bwd_s"}


def nan_on(index: int):
    def loss(batch, out, scale):
        value, metrics = loss_fn(batch, out, scale)
        return (value * float("nan") if batch.tensors["x"].shape[0] == index else value), metrics

    return loss


@pytest.mark.parametrize("stop", [True, False])
def test_a_non_finite_loss_skips_the_step_and_keeps_the_schedule_aligned(trained, score, stop) -> None:
    before = [p.detach().clone() for p in trained.params]
    passes = [update.MicroBatch(micro(1, 2, 0)), update.MicroBatch(micro(2, 2, 1)), update.MicroBatch(micro(3, 2, 2))]
    acc = update.accumulate(trained, passes, score, nan_on(2), LossScale(6.0, 3.0), stop_at_non_finite=stop,
                            where="of 3")
    assert acc.bad == "micro-batch 1 of 3 has loss nan"
    assert acc.weight == (2.0 if stop else 6.0)  # stopping leaves out the bad micro-batch and the rest
    steps = trained.scheduler.last_epoch
    outcome = update.step_optimizer(trained, acc.bad, grad_clip=1.0, skip_nan=True)
    assert outcome.skipped and outcome.stepped_schedule and math.isnan(outcome.grad_norm)
    assert all(torch.equal(p, b) for p, b in zip(trained.params, before, strict=True))
    assert all(p.grad is None for p in trained.params)
    assert trained.scheduler.last_epoch == steps + 1  # the schedule advanced all the same

    strict = update.step_optimizer(trained, acc.bad, grad_clip=1.0, skip_nan=False)
    assert not strict.stepped_schedule and trained.scheduler.last_epoch == steps + 1
    with pytest.raises(FloatingPointError, match=r"policy train step: micro-batch 1 of 3 has loss nan\..*skip_nan"):
        raise update.non_finite_error("policy", strict.bad)


def test_ranks_agree_through_the_callable_and_the_norm_goes_through_full(trained, score) -> None:
    real = micro(2, 4, 0)
    update.accumulate(trained, [update.MicroBatch(real)], score, loss_fn, loss_scale(real))
    seen = []
    outcome = update.step_optimizer(trained, None, grad_clip=1.0, skip_nan=True, any_rank=lambda bad: seen.append(bad)
                                    or True)
    assert seen == [False] and outcome.skipped and outcome.bad == "another rank had a non-finite loss"

    update.accumulate(trained, [update.MicroBatch(real)], score, loss_fn, loss_scale(real))
    gathered = []
    outcome = update.step_optimizer(trained, None, grad_clip=1e-3, skip_nan=True, any_rank=lambda bad: bad,
                                    full=lambda t: gathered.append(t) or t)
    assert len(gathered) == 1 and not outcome.skipped and outcome.grad_norm == pytest.approx(float(gathered[0]))
    assert outcome.grad_norm > 1e-3  # measured before clipping


def test_metrics_of_ranks_merge_like_one_process() -> None:
    a = update.Accumulated({"m": 6.0}, {"m": 3.0}, 2.0, None, 0.5)
    b = update.Accumulated({"m": 3.0}, {"m": 1.0}, 3.0, "x", 0.7)
    outcomes = [update.StepOutcome(1.5, 0.1, False, None, True, s) for s in (0.2, 0.4)]
    merged = update.step_metrics([a, b], outcomes, micro_batches=3, tokens=10, role="policy")
    assert merged == {
        "m": pytest.approx(9.0 / 5.0), "grad_norm": 1.5, "lr": 0.1, "skipped": 0.0, "micro_batches": 3.0,
        "tokens": 10.0, "fwd_bwd_s": 0.7, "optimizer_s": 0.4,
    }


def test_keep_casts_casts_each_weight_once_per_step_with_the_same_gradients(trained, score) -> None:
    """bf16 autocast on the CPU: with ``keep_casts`` (the local strategy's disabled autocast region
    around the passes) the weights are cast once for three micro-batches instead of three times, and
    the gradients are the same as with a fresh cast per micro-batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CountCasts(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.weight_casts = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if (func is torch.ops.aten._to_copy.default and args[0].shape == (1, 3)
                    and (kwargs or {}).get("dtype") is torch.bfloat16):
                self.weight_casts += 1  # fp32 weight -> bf16 (not the gradient's way back)
            return func(*args, **(kwargs or {}))

    parts = [update.MicroBatch(micro(2, 3, s)) for s in range(3)]
    scale = loss_scale(TrainBatch([[1]] * 6, [[2, 3]] * 6, {"loss_mask": torch.ones(6, 2)}))

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def keep():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=False)

    runs = []
    for keep_casts in (None, keep):
        with CountCasts() as counter:
            options = {} if keep_casts is None else {"keep_casts": keep_casts}
            update.accumulate(trained, parts, score, loss_fn, scale, autocast=autocast, **options)
        runs.append((counter.weight_casts, [p.grad.clone() for p in trained.params]))
    (casts_each, grads_each), (casts_kept, grads_kept) = runs
    assert casts_each == 3 and casts_kept == 1
    for a, b in zip(grads_each, grads_kept, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.is_autocast_enabled("cpu")

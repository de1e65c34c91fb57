"""The training-strategy conformance suite: what every strategy must do, checked against transformers.

A strategy plugin runs it by subclassing ``StrategyConformance`` in its own tests::

    from skyrl_core.testing.strategy_conformance import StrategyConformance

    class TestMyStrategy(StrategyConformance):
        has_critic = False  # my strategy refuses need_critic=True at construction

        def make_strategy(self, model, trainer, **flags):
            return MyStrategy(MyStrategyConfig(), model=model, trainer=trainer, **flags)

``make_strategy`` builds the strategy as the loop does: ``model`` is the ``[model]`` section
(a copy of the session's ``tiny_model_dir`` with its weights re-drawn at unit scale, so
log-probs depend on the context; CPU, float32), ``trainer`` the ``[trainer]`` section, and
``flags`` the remaining constructor keywords (``seed``, ``need_ref``, ``need_critic``,
``total_optimizer_steps``). Every test builds fresh strategies and compares them with a plain
transformers model loaded from the same folder:

* ``forward``: log-probs (and entropy) ``(B, R)``, float32 on the CPU, 0 past each response,
  equal to a teacher-forced pass with the logits divided by the temperature (0 = greedy = 1);
  empty responses are rows of zeros;
* ``train_step`` with a policy-gradient ``LossFn``: raises the log-probs of tokens with a
  positive advantage and lowers those with a negative one; reports ``grad_norm``, ``lr`` and
  ``skipped`` plus the loss function's metrics (averaged over micro-batches by their tokens);
  hands the loss function micro-batches within ``[trainer] micro_batch_tokens`` with the whole
  mini-batch's totals (``LossScale``) and log-probs equal to ``forward``'s, and the update
  does not depend on the micro-batch size; follows ``[trainer] lr_schedule`` and
  ``warmup_steps``; skips a non-finite step without a trace (``skip_nan``) or raises;
* ``named_weights``: every tensor of the Hugging Face model under its Hugging Face name, tied
  weights once, in buckets of about ``bucket_bytes``; loaded into a fresh transformers model
  they give the strategy's log-probs;
* ``save_checkpoint``/``load_checkpoint``: a fresh strategy that loads a checkpoint (moved
  to another path) continues exactly as the strategy that wrote it;
* ``export_hf``: a folder that ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained`` load,
  with the strategy's log-probs, written in one piece (nothing left beside it) and replaced
  by a later export;
* ``offload``/``onload``: outputs and the next update unchanged;
* a reference model (``need_ref``) stays the initial policy; a critic (``need_critic``) has
  values ``(B, R)``, learns from a value loss without touching the policy, and prefixes its
  metrics (``critic/grad_norm``) so they do not overwrite the policy's;
* a ``ShardedWeightSource`` plans exactly the tensors ``named_weights`` yields and sends
  them bit for bit by ``broadcast`` (gloo, received here) and ``disk``, with the checksums
  ``verify_weights`` compares.

Set ``has_ref``/``has_critic`` to False for a strategy that trains the policy only: it must
then refuse ``need_ref=True``/``need_critic=True`` in its constructor (a run fails at start-up,
not in the middle). Tolerances: ``logprob_atol`` (default 1e-4) for log-probs against
transformers; ``exact_atol`` (default 0: bit-identical) where a strategy must reproduce
itself (checkpoint round trip, offload, skipped steps).

Every assertion says what the strategy does wrong; docs/writing_a_strategy.md explains each
one and what to fix.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.protocols.strategy import ForwardOutput, LossScale, TrainBatch
from skyrl_core.protocols.weights import DIRECT_TRANSPORTS, BucketSent, Pending, ShardedWeightSource, TensorMeta
from skyrl_core.testing.conformance import make_unit_scale_copy

#: ``[trainer]`` options every test starts from (a test overrides some of them).
TRAINER_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "micro_batch_tokens": 4096,
    "lr_schedule": "constant",
    "warmup_steps": 0,
    "skip_nan": True,
}
#: Constructor keywords every test starts from.
FLAG_DEFAULTS: dict[str, Any] = {"seed": 0, "need_ref": False, "need_critic": False, "total_optimizer_steps": 10}


# -- batches and loss functions ---------------------------------------------------------------


def make_batch(vocab: int, seed: int = 0, n: int = 6, *, advantage: float | None = None) -> TrainBatch:
    """``n`` sequences of varied lengths with a ``loss_mask`` (an observation gap in the long
    responses) and ``advantages`` (random signs, or ``advantage`` on every token)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for _ in range(n):
        p = int(torch.randint(2, 10, (1,), generator=g))
        r = int(torch.randint(1, 9, (1,), generator=g))
        prompts.append(torch.randint(0, vocab, (p,), generator=g).tolist())
        responses.append(torch.randint(0, vocab, (r,), generator=g).tolist())
    width = max(len(r) for r in responses)
    mask = torch.zeros(n, width)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
        if len(r) >= 5:
            mask[i, 2:4] = 0.0  # an environment observation inside the response
    if advantage is None:
        adv = torch.randn(n, 1, generator=g).sign().expand(n, width) * mask
    else:
        adv = torch.full((n, width), float(advantage)) * mask
    return TrainBatch(prompts, responses, {"loss_mask": mask, "advantages": adv.contiguous()})


def pg_loss(micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[Any, dict[str, float]]:
    """A policy-gradient loss: ``-sum(A * logp * mask) / num_tokens`` (token mean over the
    mini-batch); its metric ``pg`` is the micro-batch's own token mean."""
    mask = micro.tensors["loss_mask"]
    total = -(micro.tensors["advantages"] * out.logprobs * mask).sum()
    return total / scale.num_tokens, {"pg": float(total.detach()) / max(float(mask.sum()), 1.0)}


def value_loss(micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[Any, dict[str, float]]:
    """Squared error of the critic's values against ``returns``, token mean over the mini-batch."""
    mask = micro.tensors["loss_mask"]
    err = ((out.values - micro.tensors["returns"]) ** 2 * mask).sum()
    return err / scale.num_tokens, {"value_mse": float(err.detach()) / max(float(mask.sum()), 1.0)}


@attrs.define
class Call:
    """What one ``loss_fn`` call received."""

    micro: TrainBatch
    tokens: int  # prompt + response tokens of the micro-batch
    scale: LossScale
    logprobs: Any  # detached copy, or None
    entropy: Any  # detached copy, or None
    requires_grad: bool
    shape_ok: bool


class Recording:
    """A ``LossFn`` that records its calls and delegates to ``fn``."""

    def __init__(self, fn: Callable[..., tuple[Any, dict[str, float]]] = pg_loss) -> None:
        self.fn = fn
        self.calls: list[Call] = []

    def __call__(self, micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[Any, dict[str, float]]:
        lp = out.logprobs
        self.calls.append(
            Call(
                micro=micro,
                tokens=sum(micro.seq_len(i) for i in range(len(micro))),
                scale=scale,
                logprobs=None if lp is None else lp.detach().float().cpu().clone(),
                entropy=None if out.entropy is None else out.entropy.detach().float().cpu().clone(),
                requires_grad=lp is not None and lp.requires_grad,
                shape_ok=lp is not None and tuple(lp.shape) == (len(micro), micro.response_len),
            )
        )
        return self.fn(micro, out, scale)


# -- the transformers reference ---------------------------------------------------------------


class HFReference:
    """A transformers model (float32, CPU) loaded from a folder, scoring batches teacher-forced."""

    def __init__(self, path: Path, model: Any = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.path = path
        self.model = model if model is not None else AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()
        self.vocab = int(self.model.get_input_embeddings().num_embeddings)

    def outputs(self, batch: TrainBatch, temperature: float) -> tuple[Any, Any]:
        """Log-probs and entropy ``(B, R)`` of the response tokens under ``logits / temperature``."""
        import torch

        t = 1.0 if temperature == 0 else temperature
        lp = torch.zeros(len(batch), batch.response_len)
        ent = torch.zeros(len(batch), batch.response_len)
        with torch.no_grad():
            for i, (p, r) in enumerate(zip(batch.prompt_ids, batch.response_ids, strict=True)):
                if not r:
                    continue
                logits = self.model(torch.tensor([p + r])).logits[0, len(p) - 1 : len(p) + len(r) - 1].float() / t
                logp = torch.log_softmax(logits, dim=-1)
                lp[i, : len(r)] = logp.gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
                ent[i, : len(r)] = -(logp.exp() * logp).sum(-1)
        return lp, ent

    def tied_groups(self) -> list[set[str]]:
        """Names of the state dict that share one tensor (tied embeddings), each group ≥ 2 names."""
        groups: dict[int, set[str]] = {}
        for name, tensor in self.model.state_dict().items():
            groups.setdefault(tensor.data_ptr(), set()).add(name)
        return [g for g in groups.values() if len(g) > 1]


def load_into_transformers(path: Path, weights: dict[str, Any]) -> HFReference:
    """A fresh transformers model from ``path`` with ``weights`` (Hugging Face names) loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    state = model.state_dict()
    unknown = sorted(set(weights) - set(state))
    assert not unknown, (
        f"named_weights yields names the Hugging Face model does not have: {unknown[:5]}; yield every tensor under "
        "its Hugging Face name (the keys of the transformers model's state_dict), without wrapper prefixes such as "
        "'_orig_mod.', 'module.' or '_fsdp_wrapped_module.'"
    )
    for name, tensor in weights.items():
        assert tuple(tensor.shape) == tuple(state[name].shape), (
            f"named_weights yields {name!r} with shape {tuple(tensor.shape)}, but the Hugging Face model's is "
            f"{tuple(state[name].shape)}: yield full (gathered, unsharded) tensors"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            state[name].copy_(tensor.to(state[name].dtype))
    return HFReference(path, model)


# -- helpers ----------------------------------------------------------------------------------


def _worst(got: Any, want: Any) -> tuple[float, tuple[int, ...]]:
    import torch

    diff = (got.double() - want.double()).abs()
    if diff.numel() == 0:
        return 0.0, ()
    flat = int(torch.argmax(torch.nan_to_num(diff, nan=math.inf)))
    return float(diff.reshape(-1)[flat]), tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))


def assert_close(got: Any, want: Any, atol: float, what: str) -> None:
    """Raise ``AssertionError(what: ...)`` when ``got`` and ``want`` differ by more than ``atol``."""
    assert tuple(got.shape) == tuple(want.shape), f"{what}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    worst, where = _worst(got, want)
    assert worst <= atol, (
        f"{what}: differs by up to {worst:.3g} (> {atol:.0e}) at {where} (got {float(got[where]):.6g}, expected "
        f"{float(want[where]):.6g})"
    )


def weights_of(strategy: Any, bucket_bytes: int = 1 << 40) -> dict[str, Any]:
    """Every tensor ``named_weights`` yields, by name (float32 CPU copies); a name twice fails."""
    out: dict[str, Any] = {}
    for bucket in strategy.named_weights(bucket_bytes):
        for name, tensor in bucket:
            assert name not in out, f"named_weights yields {name!r} twice: yield every tensor once"
            out[name] = tensor.detach().float().cpu().clone()
    return out


def assert_same_weights(got: dict[str, Any], want: dict[str, Any], atol: float, what: str) -> None:
    """``what`` explains the consequence when the two weight sets differ."""
    assert set(got) == set(want), f"{what}: named_weights yields other names ({sorted(set(got) ^ set(want))[:5]})"
    bad = []
    for name in want:
        worst, _ = _worst(got[name], want[name])
        if not worst <= atol:
            bad.append(f"{name} (up to {worst:.3g})")
    assert not bad, f"{what}: {len(bad)} of {len(want)} tensors differ: {', '.join(bad[:4])}"


def _nbytes(tensor: Any) -> int:
    return tensor.numel() * tensor.element_size()


def _check_zero_past_end(values: Any, batch: TrainBatch, what: str) -> None:
    for i, r in enumerate(batch.response_ids):
        assert bool((values[i, len(r) :] == 0).all()), (
            f"{what}: row {i} is not 0 past its response's end (position {len(r)} on): pad with zeros, the loop "
            "sums over (B, R) tensors"
        )


def _check_output_tensor(values: Any, batch: TrainBatch, what: str) -> None:
    import torch

    assert isinstance(values, torch.Tensor), f"{what}: expected a torch.Tensor, got {type(values).__name__}"
    shape = (len(batch), batch.response_len)
    assert tuple(values.shape) == shape, (
        f"{what}: shape {tuple(values.shape)}, expected (B, R) = {shape} (R = the longest response of the batch)"
    )
    assert values.dtype == torch.float32, f"{what}: dtype {values.dtype}, expected torch.float32"
    assert values.device.type == "cpu", (
        f"{what}: on {values.device}, expected the CPU (the loop combines outputs of every rank and device there)"
    )
    assert bool(torch.isfinite(values).all()), f"{what}: has non-finite values"
    _check_zero_past_end(values, batch, what)


def _result(pending: Any, what: str, timeout: float = 120.0) -> Any:
    assert isinstance(pending, Pending), (
        f"{what} returned {type(pending).__name__}, not a Pending operation (done/result/cancel; a "
        "concurrent.futures.Future is one): the core waits on both sides of a transfer together"
    )
    return pending.result(timeout=timeout)


class StrategyConformance:
    """Subclass it and implement ``make_strategy``; every ``test_*`` here then runs on your strategy."""

    #: Largest allowed |log-prob - transformers' log-prob| (and the same for entropy).
    logprob_atol: float = 1e-4
    #: Largest allowed difference where the strategy must reproduce itself (0: bit-identical).
    exact_atol: float = 0.0
    #: The ``[model] device`` the strategy is built with.
    device: str = "cpu"
    #: The strategy builds a frozen reference model for ``need_ref=True`` (else it must refuse it).
    has_ref: bool = True
    #: The strategy builds a critic for ``need_critic=True`` (else it must refuse it).
    has_critic: bool = True

    def make_strategy(self, model: ModelConfig, trainer: TrainerConfig, **flags: Any) -> Any:
        """Build the strategy under test (``flags``: seed, need_ref, need_critic, total_optimizer_steps)."""
        raise NotImplementedError("subclasses of StrategyConformance implement make_strategy(model, trainer, **flags)")

    # -- fixtures -------------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def strategy_model_dir(cls, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
        """The model folder both the strategy and the reference load (override to use another)."""
        return make_unit_scale_copy(tiny_model_dir, tmp_path_factory.mktemp("strategy-conformance") / "model")

    @pytest.fixture(scope="class")
    @classmethod
    def reference(cls, strategy_model_dir: Path) -> HFReference:
        return HFReference(strategy_model_dir)

    @pytest.fixture
    def build(self, strategy_model_dir: Path) -> Callable[..., Any]:
        """``build(**options)``: a fresh strategy; ``[trainer]`` options and constructor flags by keyword."""

        def build(**options: Any) -> Any:
            flags = {**FLAG_DEFAULTS, **{k: options.pop(k) for k in list(options) if k in FLAG_DEFAULTS}}
            trainer = TrainerConfig(**{**TRAINER_DEFAULTS, **options})
            model = ModelConfig(path=str(strategy_model_dir), device=self.device, dtype="float32")
            return self.make_strategy(model, trainer, **flags)

        return build

    # -- forward --------------------------------------------------------------------------------

    @pytest.mark.parametrize("temperature", [0.7, 1.0, 0.0])
    def test_forward_matches_teacher_forced_transformers(self, build, reference, temperature):
        strategy = build()
        batch = make_batch(reference.vocab, seed=1)
        out = strategy.forward(batch, temperature=temperature, need_entropy=True)
        assert isinstance(out, ForwardOutput), f"forward returned {type(out).__name__}, expected a ForwardOutput"
        want_lp, want_ent = reference.outputs(batch, temperature)
        _check_output_tensor(out.logprobs, batch, "forward(...).logprobs")
        hint = (
            "; log-prob j of a row scores response token j from the logits at position len(prompt) - 1 + j, divided by "
            "the temperature (0 means greedy sampling and uses 1)"
        )
        assert_close(out.logprobs, want_lp, self.logprob_atol,
                     f"forward(temperature={temperature}).logprobs against transformers{hint}")
        assert out.entropy is not None, "forward(need_entropy=True) returned entropy=None"
        _check_output_tensor(out.entropy, batch, "forward(...).entropy")
        assert_close(out.entropy, want_ent, self.logprob_atol,
                     f"forward(temperature={temperature}).entropy against the entropy of softmax(logits / temperature)")

    def test_forward_is_independent_of_the_other_sequences(self, build, reference):
        strategy = build()
        batch = make_batch(reference.vocab, seed=2, n=8)
        together = strategy.forward(batch).logprobs
        for i in range(len(batch)):
            alone = strategy.forward(batch.select([i])).logprobs
            r = len(batch.response_ids[i])
            assert_close(together[i : i + 1, :r], alone[:, :r], self.logprob_atol,
                         f"forward: sequence {i}'s log-probs in a batch of {len(batch)} against the same sequence "
                         "alone (padding or packing leaks between sequences: check the attention mask and "
                         "position ids)")

    def test_forward_tolerates_empty_responses(self, build, reference):
        import torch

        strategy = build()
        mask = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
        batch = TrainBatch([[1, 2], [3, 4, 5], [6]], [[], [7, 8, 9], []], {"loss_mask": mask, "advantages": mask})
        out = strategy.forward(batch, need_entropy=True)
        _check_output_tensor(out.logprobs, batch, "forward on a batch with empty responses: logprobs")
        assert_close(out.logprobs, reference.outputs(batch, 1.0)[0], self.logprob_atol,
                     "forward on a batch with empty responses (rows 0 and 2): logprobs")
        metrics = strategy.train_step(batch, pg_loss)
        assert metrics.get("skipped") == 0.0 and math.isfinite(metrics.get("grad_norm", math.nan)), (
            f"train_step on a batch with empty responses should train on the non-empty one, got {metrics}"
        )

    # -- train_step -----------------------------------------------------------------------------

    def test_train_step_reports_its_metrics(self, build, reference):
        strategy = build()
        metrics = strategy.train_step(make_batch(reference.vocab, seed=3), pg_loss)
        assert isinstance(metrics, dict), f"train_step returned {type(metrics).__name__}, expected a dict of floats"
        for key in ("grad_norm", "lr", "skipped"):
            assert key in metrics, f"train_step's metrics lack {key!r} (it returned {sorted(metrics)})"
            assert isinstance(metrics[key], (int, float)), f"train_step's {key!r} is a {type(metrics[key]).__name__}"
        assert metrics["skipped"] == 0.0, f"train_step skipped a finite step (skipped = {metrics['skipped']})"
        assert math.isfinite(metrics["grad_norm"]) and metrics["grad_norm"] > 0, (
            f"train_step's grad_norm is {metrics['grad_norm']}: report the total gradient norm before clipping"
        )
        assert metrics["lr"] == pytest.approx(TRAINER_DEFAULTS["lr"], rel=1e-6), (
            f"train_step's lr is {metrics['lr']}, but [trainer] lr = {TRAINER_DEFAULTS['lr']} with a constant schedule "
            "and no warmup: report the learning rate this step used"
        )
        assert "pg" in metrics, (
            f"train_step's metrics lack the loss function's metric 'pg' (it returned {sorted(metrics)}): return the "
            "loss function's metrics, averaged over micro-batches weighted by their loss tokens"
        )

    @pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
    def test_train_step_moves_log_probs_with_the_advantage(self, build, reference, sign):
        strategy = build()
        batch = make_batch(reference.vocab, seed=4, advantage=sign)
        mask = batch.tensors["loss_mask"]
        before = strategy.forward(batch).logprobs
        strategy.train_step(batch, pg_loss)
        after = strategy.forward(batch).logprobs
        change = float(((after - before) * mask).sum() / mask.sum())
        word = "raise" if sign > 0 else "lower"
        assert change * sign > 0, (
            f"a train_step with advantage {sign:+} on every token should {word} their log-probs, but their "
            f"mean changed by {change:+.3g}: minimise the loss the LossFn returns (loss.backward(), then the "
            "optimizer step), and compute log-probs with gradients in train_step"
        )

    def test_train_step_gives_the_loss_fn_micro_batches_and_mini_batch_totals(self, build, reference):
        batch = make_batch(reference.vocab, seed=5, n=8)
        lengths = [batch.seq_len(i) for i in range(len(batch))]
        budget = max(lengths) + 2
        strategy = build(micro_batch_tokens=budget)
        expected_lp = strategy.forward(batch, temperature=0.7).logprobs
        loss = Recording()
        strategy.train_step(batch, loss, temperature=0.7, need_entropy=True)
        calls = loss.calls
        assert calls, "train_step never called the loss function"
        assert len(calls) > 1, (
            f"train_step called the loss function once for {sum(lengths)} tokens with [trainer] micro_batch_tokens = "
            f"{budget}: split the mini-batch into micro-batches of at most that many tokens (prompt + response) and "
            "accumulate their gradients"
        )
        assert sum(len(c.micro) for c in calls) == len(batch), (
            f"the loss function saw {sum(len(c.micro) for c in calls)} sequences in total, the mini-batch "
            f"has {len(batch)}: every sequence belongs to exactly one micro-batch"
        )
        for k, c in enumerate(calls):
            assert c.tokens <= budget or len(c.micro) == 1, (
                f"micro-batch {k} holds {c.tokens} tokens of {len(c.micro)} sequences, over [trainer] "
                f"micro_batch_tokens = {budget} (only a single sequence longer than the budget may exceed it)"
            )
            assert c.scale.num_tokens == pytest.approx(float(batch.tensors["loss_mask"].sum())), (
                f"the loss function got LossScale.num_tokens = {c.scale.num_tokens} in micro-batch {k}; it must be the "
                f"whole mini-batch's loss-mask total ({float(batch.tensors['loss_mask'].sum())}), so that micro-batch "
                "losses add up to the mini-batch's loss"
            )
            assert c.scale.num_sequences == pytest.approx(float((batch.tensors["loss_mask"].sum(1) > 0).sum())), (
                f"LossScale.num_sequences = {c.scale.num_sequences} in micro-batch {k}: it must count the mini-batch's "
                "sequences with at least one loss token"
            )
            assert c.requires_grad, (
                "the log-probs handed to the loss function do not require grad: compute them with "
                "autograd on, so that loss.backward() reaches the weights"
            )
            assert c.shape_ok, (
                f"the log-probs of micro-batch {k} are not (len(micro), micro.response_len): pass ForwardOutput "
                "tensors shaped like the micro-batch's tensors (TrainBatch.select cuts them to its own R)"
            )
            assert c.entropy is not None, "train_step(need_entropy=True) gave the loss function entropy=None"
            micro, lp = c.micro, c.logprobs
            for j in range(len(micro)):
                i = next(
                    i
                    for i in range(len(batch))
                    if batch.prompt_ids[i] == micro.prompt_ids[j] and batch.response_ids[i] == micro.response_ids[j]
                )
                r = len(batch.response_ids[i])
                assert_close(lp[j, :r], expected_lp[i, :r], self.logprob_atol,
                             f"train_step(temperature=0.7): the log-probs of sequence {i} handed to the loss function "
                             "against forward(temperature=0.7) with the same weights (the training pass must apply the "
                             "temperature and match the no-grad pass, e.g. dropout off, or PPO ratios start away "
                             "from 1)")

    def test_micro_batch_size_does_not_change_the_update(self, build, reference):
        batch = make_batch(reference.vocab, seed=6, n=8)
        budgets = (1, max(batch.seq_len(i) for i in range(len(batch))) + 4, 1 << 20)
        results = {}
        for budget in budgets:
            strategy = build(micro_batch_tokens=budget)
            metrics = strategy.train_step(batch, pg_loss)
            results[budget] = (metrics, strategy.forward(batch).logprobs)
        base_metrics, base_lp = results[1 << 20]
        for budget in budgets[:-1]:
            metrics, lp = results[budget]
            assert metrics["grad_norm"] == pytest.approx(base_metrics["grad_norm"], rel=1e-4), (
                f"grad_norm is {metrics['grad_norm']:.6g} with micro_batch_tokens = {budget} but "
                f"{base_metrics['grad_norm']:.6g} with one micro-batch: accumulate the gradients of every micro-batch "
                "(backward on each loss as returned, optimizer step once), without rescaling them"
            )
            assert metrics["pg"] == pytest.approx(base_metrics["pg"], rel=1e-4, abs=1e-6), (
                f"the loss function's metric 'pg' is {metrics['pg']:.6g} with micro_batch_tokens = {budget} but "
                f"{base_metrics['pg']:.6g} with one micro-batch: average metrics over micro-batches weighted by their "
                "loss_mask tokens"
            )
            assert_close(lp, base_lp, 10 * self.logprob_atol,
                         f"log-probs after a step with micro_batch_tokens = {budget} against one micro-batch")

    def test_train_step_follows_the_lr_schedule(self, build, reference):
        lr, warmup, total = TRAINER_DEFAULTS["lr"], 2, 5
        strategy = build(lr_schedule="linear", warmup_steps=warmup, total_optimizer_steps=total)
        batch = make_batch(reference.vocab, seed=7)
        got = [strategy.train_step(batch, pg_loss)["lr"] for _ in range(total)]
        # Warmup: step s < warmup uses (s + 1) / warmup; then linear decay over the rest.
        want = [
            lr * (s + 1) / warmup if s < warmup else lr * (1 - (s - warmup) / (total - warmup)) for s in range(total)
        ]
        assert got == pytest.approx(want, rel=1e-6, abs=1e-12), (
            f"the lr of {total} steps with [trainer] lr_schedule = 'linear', warmup_steps = {warmup} and "
            f"total_optimizer_steps = {total} is {got}, expected {want}: warm up linearly ((s + 1) / warmup_steps at "
            "optimizer step s), then follow the schedule up to total_optimizer_steps, and report the lr each step used"
        )

    def test_a_non_finite_loss_skips_the_step(self, build, reference):
        batch = make_batch(reference.vocab, seed=8)

        def nan_loss(micro, out, scale):
            loss, metrics = pg_loss(micro, out, scale)
            return loss * float("nan"), metrics

        strategy = build()
        before = weights_of(strategy)
        metrics = strategy.train_step(batch, nan_loss)
        assert metrics.get("skipped") == 1.0, (
            f"a NaN loss with [trainer] skip_nan = true must skip the step and report skipped = 1.0, got {metrics}"
        )
        assert_same_weights(weights_of(strategy), before, self.exact_atol,
                            "the weights after a skipped step (a skipped step must not change them)")
        strategy.train_step(batch, pg_loss)
        clean = build()
        clean.train_step(batch, pg_loss)
        assert_same_weights(weights_of(strategy), weights_of(clean), self.exact_atol,
                            "a good step after a skipped one against the same step on a fresh strategy (drop the "
                            "skipped step's gradients and leave the optimizer state untouched)")

    def test_a_non_finite_loss_raises_without_skip_nan(self, build, reference):
        strategy = build(skip_nan=False)
        before = weights_of(strategy)
        batch = make_batch(reference.vocab, seed=8)
        try:
            metrics = strategy.train_step(batch, lambda m, o, s: (pg_loss(m, o, s)[0] * float("inf"), {}))
        except AssertionError:
            raise
        except Exception:  # any error: the run stops and says why
            pass
        else:
            raise AssertionError(
                f"a non-finite loss with [trainer] skip_nan = false must raise (the run stops and says why), but "
                f"train_step returned {metrics}"
            )
        assert_same_weights(
            weights_of(strategy), before, self.exact_atol, "the weights after a non-finite loss with skip_nan = false"
        )

    # -- named_weights --------------------------------------------------------------------------

    def test_named_weights_are_every_tensor_once_by_hugging_face_name(self, build, reference):
        weights = weights_of(build())
        state = reference.model.state_dict()
        tied = reference.tied_groups()
        for group in tied:
            both = sorted(group & set(weights))
            assert len(both) <= 1, (
                f"named_weights yields {both}, which are one tied tensor: yield it once, under its first name as "
                "save_pretrained does (dedupe by storage)"
            )
        covered = set(weights) | {n for g in tied if g & set(weights) for n in g}
        missing = sorted(set(state) - covered)
        assert not missing, (
            f"named_weights leaves out {missing[:5]} ({len(missing)} tensors of the Hugging Face model): engines would "
            "keep their old values"
        )
        unknown = sorted(set(weights) - set(state))
        assert not unknown, f"named_weights yields names the Hugging Face model does not have: {unknown[:5]}"

    def test_named_weights_come_in_buckets_of_about_bucket_bytes(self, build):
        import torch

        strategy = build()
        total = sum(_nbytes(t) for t in weights_of(strategy).values())
        size = total // 5
        buckets = list(strategy.named_weights(size))
        assert all(isinstance(b, list) and b for b in buckets), (
            "named_weights must yield non-empty lists of (name, tensor) pairs"
        )
        for k, bucket in enumerate(buckets):
            for item in bucket:
                assert isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], torch.Tensor), (
                    f"bucket {k} holds {type(item).__name__}, expected (name, tensor) pairs"
                )
            nbytes = sum(_nbytes(t) for _, t in bucket)
            largest = max(_nbytes(t) for _, t in bucket)
            assert nbytes <= size + largest, (
                f"bucket {k} holds {nbytes} bytes with bucket_bytes = {size}: close a bucket once it reaches "
                "bucket_bytes (the receiver holds a whole bucket in memory)"
            )
        assert 2 <= len(buckets) <= 2 * total // size + 1, (
            f"named_weights({size}) yields {len(buckets)} buckets for {total} bytes: put tensors together into buckets "
            "of about bucket_bytes (one bucket per tensor makes a sync slow; one bucket for all can run out of memory)"
        )

    def test_named_weights_load_into_transformers(self, build, reference, strategy_model_dir):
        strategy = build()
        batch = make_batch(reference.vocab, seed=9)
        strategy.train_step(batch, pg_loss)
        loaded = load_into_transformers(strategy_model_dir, weights_of(strategy, bucket_bytes=1 << 16))
        assert_close(loaded.outputs(batch, 1.0)[0], strategy.forward(batch).logprobs, self.logprob_atol,
                     "log-probs of a transformers model holding named_weights (after a step) against the strategy's "
                     "forward (named_weights must yield the trained weights, not a stale or partial copy)")

    # -- checkpoints ----------------------------------------------------------------------------

    def test_checkpoint_round_trip_continues_exactly(self, build, reference, tmp_path):
        batches = [make_batch(reference.vocab, seed=10 + k) for k in range(2)]
        options = {"lr_schedule": "cosine", "warmup_steps": 2, "total_optimizer_steps": 6}
        first = build(**options)
        first.train_step(batches[0], pg_loss)
        saved_lp = first.forward(batches[1]).logprobs
        writing = tmp_path / "ckpt.tmp"
        writing.mkdir()
        first.save_checkpoint(writing)
        final = tmp_path / "checkpoint"
        os.replace(writing, final)  # what the loop does: write under a temporary name, then rename
        expected = [first.train_step(batches[1], pg_loss)["lr"] for _ in range(3)]

        second = build(**options)
        second.load_checkpoint(final)
        assert_close(second.forward(batches[1]).logprobs, saved_lp, self.exact_atol,
                     "log-probs after load_checkpoint against those when the checkpoint was saved (the policy "
                     "weights were not restored)")
        got = [second.train_step(batches[1], pg_loss)["lr"] for _ in range(3)]
        assert got == pytest.approx(expected, rel=1e-9), (
            f"the 3 steps after load_checkpoint used lr {got}, the 3 steps after save_checkpoint {expected}: save "
            "and restore the LR schedule's position"
        )
        assert_same_weights(weights_of(second), weights_of(first), self.exact_atol,
                            "weights after 3 steps following load_checkpoint against the same steps without the "
                            "round trip (save and restore the optimizer state too: AdamW moments and step counts)")

    # -- export ---------------------------------------------------------------------------------

    def test_export_hf_loads_with_transformers(self, build, reference, strategy_model_dir, tmp_path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(strategy_model_dir)
        strategy = build()
        batch = make_batch(reference.vocab, seed=12)
        out_dir = tmp_path / "exports" / "model"
        out_dir.parent.mkdir()
        for step in range(2):
            strategy.train_step(batch, pg_loss)
            strategy.export_hf(out_dir, tokenizer)
            left = sorted(p.name for p in out_dir.parent.iterdir())
            assert left == ["model"], (
                f"export_hf left {left} beside the folder: write to a temporary sibling and rename it into place, "
                "removing the temporary folder"
            )
            try:
                model = AutoModelForCausalLM.from_pretrained(out_dir)
            except Exception as exc:
                raise AssertionError(
                    f"AutoModelForCausalLM.from_pretrained cannot load the export_hf folder: {type(exc).__name__}: "
                    f"{exc}; write it with save_pretrained"
                ) from exc
            try:
                exported_tokenizer = AutoTokenizer.from_pretrained(out_dir)
            except Exception as exc:
                raise AssertionError(
                    f"AutoTokenizer.from_pretrained cannot load the export_hf folder: {exc}; call "
                    "tokenizer.save_pretrained(path) too"
                ) from exc
            text = "Compute 12 + 30."
            assert exported_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"], (
                "the exported tokenizer encodes text differently from the one passed to export_hf"
            )
            assert_close(
                HFReference(out_dir, model.float()).outputs(batch, 1.0)[0],
                strategy.forward(batch).logprobs,
                self.logprob_atol,
                f"log-probs of the exported model (export {step + 1}, replacing the previous one) against "
                "the strategy's forward",
            )

    # -- placement ------------------------------------------------------------------------------

    def test_offload_and_onload_keep_outputs_and_updates(self, build, reference):
        batch = make_batch(reference.vocab, seed=13)
        strategy = build()
        strategy.train_step(batch, pg_loss)
        before = strategy.forward(batch, need_entropy=True)
        strategy.offload()
        strategy.onload()
        after = strategy.forward(batch, need_entropy=True)
        assert_close(after.logprobs, before.logprobs, self.exact_atol, "log-probs after offload() and onload()")
        strategy.train_step(batch, pg_loss)
        plain = build()
        plain.train_step(batch, pg_loss)
        plain.train_step(batch, pg_loss)
        assert_same_weights(weights_of(strategy), weights_of(plain), self.exact_atol,
                            "weights after offload/onload and a step against the same steps without offloading "
                            "(move the optimizer state back too)")

    # -- reference model and critic -------------------------------------------------------------

    def test_reference_model_stays_the_initial_policy(self, build, reference):
        if not self.has_ref:
            _refuses(build, "need_ref", "has_ref")
            return
        strategy = build(need_ref=True)
        batch = make_batch(reference.vocab, seed=14)
        initial = strategy.forward(batch, temperature=0.7).logprobs
        ref0 = strategy.forward(batch, role="ref", temperature=0.7).logprobs
        _check_output_tensor(ref0, batch, "forward(role='ref').logprobs")
        assert_close(ref0, initial, self.logprob_atol, "forward(role='ref') against the initial policy")
        strategy.train_step(batch, pg_loss)
        ref1 = strategy.forward(batch, role="ref", temperature=0.7).logprobs
        assert_close(ref1, ref0, self.exact_atol,
                     "forward(role='ref') after a policy step against before it (the reference must stay frozen: a "
                     "copy of the initial policy, never trained)")

    def test_critic_learns_values_without_touching_the_policy(self, build, reference):
        import torch

        if not self.has_critic:
            _refuses(build, "need_critic", "has_critic")
            return
        strategy = build(need_critic=True)
        batch = make_batch(reference.vocab, seed=15)
        batch.tensors["returns"] = torch.ones_like(batch.tensors["loss_mask"]) * batch.tensors["loss_mask"]
        values = strategy.forward(batch, role="critic").values
        assert values is not None, "forward(role='critic') returned values=None"
        _check_output_tensor(values, batch, "forward(role='critic').values")
        policy = strategy.forward(batch).logprobs
        mask = batch.tensors["loss_mask"]

        def mse() -> float:
            v = strategy.forward(batch, role="critic").values
            return float((((v - batch.tensors["returns"]) ** 2) * mask).sum() / mask.sum())

        start = mse()
        for _ in range(3):
            metrics = strategy.train_step(batch, value_loss, role="critic")
        assert mse() < start, (
            f"three critic steps on a squared-error loss did not lower it ({start:.4g} -> {mse():.4g})"
        )
        plain = [k for k in metrics if "/" not in k]
        assert not plain, (
            f"train_step(role='critic') returned unprefixed metrics {plain}: the loop merges them with the policy's "
            "step metrics, so prefix them (critic/grad_norm, critic/lr, ...)"
        )
        assert_close(strategy.forward(batch).logprobs, policy, self.exact_atol,
                     "policy log-probs after critic steps (a critic step must not change the policy)")

    # -- the strategy side of a direct weight transfer ------------------------------------------

    def _source(self, build) -> Any:
        strategy = build()
        if not isinstance(strategy, ShardedWeightSource):
            pytest.skip("not a ShardedWeightSource: weights go through named_weights only")
        offered = tuple(strategy.direct_transports())
        unknown = [t for t in offered if t not in DIRECT_TRANSPORTS]
        assert not unknown, f"direct_transports() offers {unknown}, which are not of {DIRECT_TRANSPORTS}"
        return strategy

    def test_weight_plan_matches_named_weights(self, build):
        from skyrl_core.runtime.weight_sync import dtype_of

        strategy = self._source(build)
        weights = weights_of(strategy)
        size = sum(_nbytes(t) for t in weights.values()) // 5
        plan = strategy.weight_plan(size)
        assert all(isinstance(m, TensorMeta) for bucket in plan for m in bucket), (
            "weight_plan must return lists of TensorMeta"
        )
        names = [m.name for bucket in plan for m in bucket]
        assert sorted(names) == sorted(weights), (
            f"weight_plan plans other tensors than named_weights yields (differences: "
            f"{sorted(set(names) ^ set(weights))[:5]}, or a name twice): plan exactly those"
        )
        for m in (m for bucket in plan for m in bucket):
            assert tuple(m.shape) == tuple(weights[m.name].shape), (
                f"weight_plan gives {m.name!r} the shape {m.shape}, named_weights {tuple(weights[m.name].shape)}"
            )
            dtype_of(m.dtype)  # a torch dtype name such as "float32"
        assert strategy.weight_plan(size) == plan, "weight_plan changed between two calls on an unchanged model"
        assert len(plan) >= 2, (
            f"weight_plan({size}) put {sum(_nbytes(t) for t in weights.values())} bytes in one bucket"
        )

    def test_broadcast_sends_named_weights_exactly(self, build):
        import torch

        from skyrl_core.runtime.weight_sync import SyncGroup, expected_checksums

        strategy = self._source(build)
        if "broadcast" not in strategy.direct_transports() or self.device != "cpu":
            pytest.skip("offers no 'broadcast' on the CPU (gloo), which this test receives")
        weights = weights_of(strategy)
        plan = strategy.weight_plan(sum(_nbytes(t) for t in weights.values()) // 3)
        host, port = strategy.rendezvous()
        joined = strategy.join_weight_group(host, port, 2)
        group = _in_thread(lambda: SyncGroup(host, port, 1, 2, torch.device("cpu"), 60.0))
        _result(joined, "join_weight_group(host, port, world_size)")
        receiver = group.result(timeout=120)
        received: dict[str, Any] = {}
        for metas in plan:
            dtypes = {m.name: "bfloat16" for m in metas}
            sending = strategy.send_bucket([m.name for m in metas], "broadcast", dtypes=dtypes)
            receiving = _in_thread(lambda metas=metas: receiver.receive(metas))
            sent = _result(sending, "send_bucket(names, 'broadcast')")
            received.update(receiving.result(timeout=120))
            assert isinstance(sent, BucketSent), f"send_bucket's result is {type(sent).__name__}, expected a BucketSent"
            named = [(m.name, weights[m.name]) for m in metas]
            assert sent.checksums == expected_checksums(named, dtypes), (
                "BucketSent.checksums differ from expected_checksums(the bucket's tensors, dtypes): compute them "
                "with skyrl_core.api.expected_checksums from the tensors sent, cast to the engines' dtypes"
            )
        assert_same_weights({n: t.float() for n, t in received.items()}, weights, 0.0,
                            "the tensors received by broadcast against named_weights (pack each bucket with "
                            "skyrl_core.api.pack in the plan's order and dtypes)")

    def test_disk_writes_named_weights_exactly(self, build, tmp_path):
        from skyrl_core.runtime.weight_sync import read_bucket

        strategy = self._source(build)
        if "disk" not in strategy.direct_transports():
            pytest.skip("offers no 'disk' transport")
        weights = weights_of(strategy)
        received: dict[str, Any] = {}
        for i, metas in enumerate(strategy.weight_plan(1 << 40)):
            path = tmp_path / f"bucket-{i}.safetensors"
            _result(strategy.send_bucket([m.name for m in metas], "disk", path=str(path)), "send_bucket(.., 'disk')")
            received.update(read_bucket(path))
        assert_same_weights({n: t.float() for n, t in received.items()}, weights, 0.0,
                            "the tensors written by the 'disk' transport against named_weights")


def _refuses(build: Callable[..., Any], flag: str, attribute: str) -> None:
    """A strategy without that model must fail at construction (a run then fails at start-up)."""
    try:
        build(**{flag: True})
    except AssertionError:
        raise
    except Exception:
        return
    raise AssertionError(
        f"{attribute} = False says the strategy cannot build that model, but constructing it with {flag}=True "
        "succeeded: raise in the constructor (a run then fails at start-up, not at its first step), or set "
        f"{attribute} = True and implement it"
    )


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a new thread; a ``concurrent.futures.Future`` of its result."""
    import concurrent.futures

    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the waiting test
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future

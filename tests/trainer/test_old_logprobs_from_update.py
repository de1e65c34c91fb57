"""``[trainer] old_logprobs_from_update``: on an exactly on-policy step the old log-probs come from
the update's own forward pass (detached) instead of a separate pass, with the same loss and
gradients as the two-pass path; off-policy steps keep the separate pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainer_support import metrics, write_config

from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.cli import main
from skyrl_core.config.schema import AlgorithmConfig, ModelConfig, TrainerConfig
from skyrl_core.losses import make_policy_loss_fn
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.trainer import old_logprobs_from_update


def _batch(seed: int, n: int = 6) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for _ in range(n):
        prompts.append(torch.randint(0, 64, (int(torch.randint(2, 7, (1,), generator=g)),), generator=g).tolist())
        responses.append(torch.randint(0, 64, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g).tolist())
    width = max(len(r) for r in responses)
    mask = torch.zeros(n, width)
    for i, r in enumerate(responses):
        mask[i, : len(r)] = 1.0
    adv = torch.randn(n, 1, generator=g).expand(n, width) * mask
    rollout = -torch.rand(n, width, generator=g) * mask
    tensors = {"loss_mask": mask, "advantages": adv.contiguous(), "rollout_logprobs": rollout}
    return TrainBatch(prompts, responses, tensors)


def _grads_of_one_step(model_dir: Path, fused: bool, *, micro_batch_tokens: int) -> tuple[dict, list[torch.Tensor]]:
    """One ``train_step`` of a fresh local strategy; its metrics and the accumulated gradients."""
    from skyrl_core.strategies.local import LocalStrategy

    trainer = TrainerConfig(lr=1e-2, weight_decay=0.0, micro_batch_tokens=micro_batch_tokens)
    strategy = LocalStrategy(None, model=ModelConfig(path=str(model_dir), device="cpu"), trainer=trainer, seed=0)
    batch = _batch(0)
    algo = AlgorithmConfig()
    if not fused:  # the two-pass path: a separate forward pass first, as the loop runs it
        batch.tensors["old_logprobs"] = strategy.forward(batch, temperature=1.0).logprobs.float().cpu()
    grads: dict[str, torch.Tensor] = {}
    params = dict(strategy.policy.named_parameters())
    hooks = [
        p.register_post_accumulate_grad_hook(lambda p, name=name: grads.__setitem__(name, p.grad.detach().clone()))
        for name, p in params.items()
    ]
    loss_fn = make_policy_loss_fn(ppo_clip, None, algo, 1, 0.0, old_from_forward=fused)
    m = strategy.train_step(batch, loss_fn, temperature=1.0, need_entropy=True)
    for h in hooks:
        h.remove()
    return m, [grads[name] for name in sorted(grads)]


@pytest.mark.parametrize("micro_batch_tokens", [8192, 24])  # one micro-batch, and several
def test_loss_and_gradients_equal_the_two_pass_path(tiny_model_dir: Path, micro_batch_tokens: int) -> None:
    model_dir = tiny_model_dir
    two_pass, g_two = _grads_of_one_step(model_dir, False, micro_batch_tokens=micro_batch_tokens)
    fused, g_fused = _grads_of_one_step(model_dir, True, micro_batch_tokens=micro_batch_tokens)
    assert len(g_two) == len(g_fused) > 0
    for a, b in zip(g_two, g_fused, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
    for key in ("policy/loss", "policy/pg_loss", "grad_norm", "policy/entropy"):
        assert fused[key] == pytest.approx(two_pass[key], rel=1e-5, abs=1e-7), key
    # the ratio the loss used is exactly 1 on the fused path (and 1 up to rounding on the other)
    assert fused["policy/ratio_max"] == fused["policy/ratio_min"] == 1.0
    # the trainer-vs-engine metrics the loop reported from its separate pass now come from the
    # update: the max over micro-batches is a max, not an average
    assert fused["policy/rollout_logprob_diff_max"] >= fused["policy/rollout_logprob_diff_mean"] > 0


def test_fused_only_when_exact() -> None:
    from skyrl_core.config.schema import RunConfig

    def cfg(**trainer):
        c = RunConfig(model=ModelConfig(path="unused"))
        for k, v in trainer.items():
            setattr(c.trainer, k, v)
        return c

    assert old_logprobs_from_update(cfg(), 1)
    assert not old_logprobs_from_update(cfg(), 2)  # a second mini-batch trains on stepped weights
    assert not old_logprobs_from_update(cfg(epochs_per_step=2), 1)
    assert not old_logprobs_from_update(cfg(old_logprobs_from_update=False), 1)
    c = cfg()
    c.algorithm.kl.mode = "reward"  # the reward needs the old log-probs before the update
    assert not old_logprobs_from_update(c, 1)
    c = cfg()
    c.algorithm.use_rollout_logprobs = True
    assert not old_logprobs_from_update(c, 1)


def _train(root: Path, fused: bool) -> dict[int, dict]:
    cfg = write_config(root, steps=1)
    # one mini-batch of the step's 4 prompts: the update is exactly on-policy
    fuse = f"trainer.old_logprobs_from_update={str(fused).lower()}"
    argv = ["train", str(cfg), "trainer.prompts_per_minibatch=4", fuse]
    assert main(argv) == 0
    return metrics(root / "run")


def test_a_run_matches_the_two_pass_run_and_reports_it(tmp_path: Path) -> None:
    """The real loop, one step each way: same loss, same gradient norm, same trained weights;
    the fused run skips the separate pass (no ``timing/old_logprobs``)."""
    fused = _train(tmp_path / "fused", True)[1]
    separate = _train(tmp_path / "separate", False)[1]
    assert fused["policy/old_logprobs_from_update"] == 1.0 and separate["policy/old_logprobs_from_update"] == 0.0
    assert "timing/old_logprobs" not in fused and "timing/old_logprobs" in separate
    for key in ("reward/mean", "policy/pg_loss", "policy/grad_norm", "policy/entropy"):
        assert fused[key] == pytest.approx(separate[key], rel=1e-5, abs=1e-7), key
    assert fused["policy/rollout_logprob_diff_max"] < 1e-3  # in-process sync: the engine had the trainer's weights
    a = load_file(next((tmp_path / "fused/run/export").glob("*.safetensors")))
    b = load_file(next((tmp_path / "separate/run/export").glob("*.safetensors")))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)

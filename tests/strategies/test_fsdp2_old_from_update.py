"""The fused old log-probs (``[trainer] old_logprobs_from_update``) on the fsdp2 workers: the loss
sees this pass's own log-probs on every rank and micro-batch, with the same loss, gradient norm
and updated weights as the local strategy's two-pass step."""

from __future__ import annotations

import attrs
import pytest
import torch

from skyrl_core.algorithms.configs import PPOClipConfig
from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.config.schema import AlgorithmConfig
from skyrl_core.losses import make_policy_loss_fn

pytest.importorskip("ray")

from test_fsdp2 import MICRO_TOKENS, make_fsdp2, weights


def test_fused_step_on_fsdp2_matches_the_two_pass_local_step(ray_cluster, qwen2_dir, make_strategy, make_batch):
    algo = attrs.evolve(AlgorithmConfig(), entropy_coef=0.01)
    local = make_strategy(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    fsdp2 = make_fsdp2(qwen2_dir, micro_batch_tokens=MICRO_TOKENS)
    batch = make_batch(0)
    batch.tensors["rollout_logprobs"] = local.forward(batch).logprobs.detach() - 0.01 * batch.tensors["loss_mask"]
    two_pass = batch.select(list(range(len(batch))))
    two_pass.tensors["old_logprobs"] = local.forward(batch).logprobs
    m_local = local.train_step(two_pass, make_policy_loss_fn(ppo_clip, PPOClipConfig(), algo, 100, 0.0),
                               need_entropy=True)
    fused = make_policy_loss_fn(ppo_clip, PPOClipConfig(), algo, 100, 0.0, old_from_forward=True)
    m_fsdp2 = fsdp2.train_step(batch, fused, need_entropy=True)
    assert m_fsdp2["micro_batches"] >= 2
    for key in ("policy/loss", "policy/entropy", "grad_norm"):
        assert m_fsdp2[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-6), key
    # the trainer-vs-rollout metrics come from the update pass; the max is a max over ranks and micro-batches
    assert m_fsdp2["policy/rollout_logprob_diff_max"] == pytest.approx(0.01, rel=1e-3)
    assert m_fsdp2["policy/ratio_max"] == m_fsdp2["policy/ratio_min"] == 1.0
    w_fsdp2, w_local = weights(fsdp2), weights(local)
    for name in w_local:
        torch.testing.assert_close(w_fsdp2[name], w_local[name], atol=1e-4, rtol=0, msg=name)
    fsdp2.shutdown()

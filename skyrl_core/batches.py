"""From rollouts to the tensors of one RL step: the batch, advantages, KL in the reward, mini-batches.

``trainer.py`` calls these in the order of the step; each is a plain function of tensors and
configs so it can be read (and tested) on its own. The losses the strategy minimises are in
``skyrl_core.losses``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from skyrl_core.algorithms.kl import apply_kl_penalty, kl_estimate
from skyrl_core.algorithms.masked import masked_mean
from skyrl_core.config.schema import AlgorithmConfig
from skyrl_core.protocols.algorithms import AdvantageInput
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.rollout import RolloutBatch


def _pad(rows: list[list[float]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.float32)
    for i, row in enumerate(rows):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
    return out


def rollouts_to_batch(rollouts: RolloutBatch) -> tuple[TrainBatch, torch.Tensor]:
    """A ``TrainBatch`` with ``loss_mask``, ``rollout_logprobs``, ``token_rewards`` and the
    ``(B,)`` group ids."""
    trajs = rollouts.trajectories
    width = max((len(t.response_ids) for t in trajs), default=0)
    tensors = {
        "loss_mask": _pad([[float(m) for m in t.loss_mask] for t in trajs], width),
        "rollout_logprobs": _pad([list(t.rollout_logprobs) for t in trajs], width),
        "token_rewards": _pad([list(t.token_rewards) for t in trajs], width),
    }
    batch = TrainBatch([list(t.prompt_ids) for t in trajs], [list(t.response_ids) for t in trajs], tensors)
    group_ids = torch.tensor([t.group_id for t in trajs], dtype=torch.long)
    return batch, group_ids


def compute_advantages(
    estimator: Callable[..., Any], estimator_cfg: Any, batch: TrainBatch, group_ids: torch.Tensor
) -> dict[str, float]:
    """Run the advantage estimator; store ``advantages`` and ``returns`` in the batch."""
    t = batch.tensors
    out = estimator(
        AdvantageInput(
            token_rewards=t["token_rewards"],
            response_mask=t["loss_mask"],
            group_ids=group_ids,
            values=t.get("old_values"),
        ),
        estimator_cfg,
    )
    t["advantages"] = out.advantages.detach().float()
    t["returns"] = out.returns.detach().float()
    mask = t["loss_mask"]
    adv = t["advantages"]
    valid = adv[mask > 0]
    return {
        "policy/advantage_mean": float(masked_mean(adv, mask)),
        "policy/advantage_abs_mean": float(masked_mean(adv.abs(), mask)),
        "policy/advantage_max": float(valid.max()) if valid.numel() else 0.0,
        "policy/advantage_min": float(valid.min()) if valid.numel() else 0.0,
    }


def penalise_rewards_with_kl(batch: TrainBatch, algo: AlgorithmConfig, coef: float) -> dict[str, float]:
    """KL-in-reward: subtract ``coef * KL(old || ref)`` from each token's reward."""
    t = batch.tensors
    kl = kl_estimate(t["old_logprobs"], t["ref_logprobs"], algo.kl.estimator)
    t["token_rewards"] = apply_kl_penalty(t["token_rewards"], kl, t["loss_mask"], coef)
    return {"policy/kl_ref": float(masked_mean(kl, t["loss_mask"])), "policy/kl_coef": coef}


def split_minibatches(
    group_ids: torch.Tensor, prompts_per_minibatch: int, generator: torch.Generator
) -> list[list[int]]:
    """Sequence indices of each mini-batch: whole groups, shuffled, ``prompts_per_minibatch`` groups each."""
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_ids.tolist()):
        groups.setdefault(g, []).append(i)
    keys = list(groups)
    order = torch.randperm(len(keys), generator=generator).tolist()
    keys = [keys[i] for i in order]
    return [
        [i for g in keys[s : s + prompts_per_minibatch] for i in groups[g]]
        for s in range(0, len(keys), prompts_per_minibatch)
    ]


def mean_metrics(items: list[dict[str, float]]) -> dict[str, float]:
    """Average dicts of metrics key by key."""
    sums: dict[str, list[float]] = {}
    for m in items:
        for k, v in m.items():
            sums.setdefault(k, []).append(float(v))
    return {k: sum(v) / len(v) for k, v in sums.items()}

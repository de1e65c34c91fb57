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
from skyrl_core.algorithms.reductions import needs_weights, reduction_weights, weights_key
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


def uniform_groups(batch: TrainBatch, group_ids: torch.Tensor, tol: float) -> list[int]:
    """The prompt groups whose live samples (those with a loss token) all scored within ``tol`` of
    each other, with at least two live samples: nothing for a group-relative estimator to compare
    (SkyRL's ``zero_variance_filter``). A sample's score is the sum of its token rewards."""
    scores = batch.tensors["token_rewards"].sum(dim=-1)
    live = (batch.tensors["loss_mask"] > 0).any(dim=-1)
    found = []
    for g in torch.unique(group_ids).tolist():
        member = (group_ids == g) & live
        if int(member.sum()) > 1 and float(scores[member].max() - scores[member].min()) <= tol:
            found.append(int(g))
    return found


def filter_zero_variance(
    batch: TrainBatch, group_ids: torch.Tensor, algo: AlgorithmConfig
) -> tuple[TrainBatch, torch.Tensor, dict[str, float]]:
    """``[algorithm] zero_variance_filter``: mask (zero the loss mask of) or drop the ``uniform_groups``.

    Returns the batch and group ids to train on (the same objects when nothing changed) and
    ``rollout/zero_variance_groups`` (how many groups were masked or dropped) and
    ``rollout/zero_variance_frac`` (their share of the step's groups).
    """
    if algo.zero_variance_filter == "off":
        return batch, group_ids, {}
    uniform = uniform_groups(batch, group_ids, algo.zero_variance_tol)
    n_groups = len(torch.unique(group_ids))
    metrics = {
        "rollout/zero_variance_groups": float(len(uniform)),
        "rollout/zero_variance_frac": len(uniform) / n_groups if n_groups else 0.0,
    }
    if not uniform:
        return batch, group_ids, metrics
    hit = torch.isin(group_ids, torch.tensor(uniform, dtype=group_ids.dtype))
    if algo.zero_variance_filter == "mask":
        batch.tensors["loss_mask"] = batch.tensors["loss_mask"] * (~hit).to(batch.tensors["loss_mask"].dtype)[:, None]
        return batch, group_ids, metrics
    kept = torch.nonzero(~hit).squeeze(-1).tolist()
    return batch.select(kept), group_ids[kept], metrics


def attach_reduction_weights(
    mini: TrainBatch, group_ids: torch.Tensor, algo: AlgorithmConfig, norm_tokens: int
) -> None:
    """Store the per-token weights of every loss term whose reduction needs the whole mini-batch
    (``prompt_mean``, ``token_mean_legacy``, or a per-sequence mean with ``empty_sequences =
    "count"``) in ``mini.tensors[weights_key(mode)]``; the loss functions read them per micro-batch.

    ``group_ids`` are the prompt groups of ``mini``'s rows, in its order.
    """
    terms = ["policy", "kl", "entropy", "value"]
    modes = {algo.reduction(term) for term in terms}  # type: ignore[arg-type]
    for mode in sorted(modes):
        if needs_weights(mode, algo.empty_sequences):
            mini.tensors[weights_key(mode)] = reduction_weights(
                mini.tensors["loss_mask"],
                mode,
                group_ids=group_ids,
                micro_batch_sequences=algo.legacy_micro_batch_sequences,
                norm_tokens=norm_tokens,
                empty_sequences=algo.empty_sequences,
            )


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

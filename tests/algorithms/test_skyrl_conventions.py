"""SkyRL's conventions as options, each against a reference formula written out here.

* the reductions that need the whole mini-batch (``prompt_mean``, ``token_mean_legacy``) and
  SkyRL's counting of fully masked sequences (``empty_sequences = "count"``);
* per-term reductions: the KL term, the entropy bonus and the value loss reduced independently
  of ``loss_reduction`` (SkyRL: KL and value a per-sequence mean, entropy a per-micro-batch
  token mean);
* population vs Bessel-corrected variance wherever an estimator whitens;
* GRPO's singleton group: 0 here, ``score / (1 + eps)`` in SkyRL.

The references are plain Python over lists (no call into the code under test), so a wrong
weight anywhere shows up as a number that differs.
"""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from skyrl_core.algorithms.advantages import gae, grpo, reinforce_pp, reinforce_pp_baseline, rloo
from skyrl_core.algorithms.configs import GAEConfig, GRPOConfig, PPOClipConfig, ReinforcePPConfig, RLOOConfig
from skyrl_core.algorithms.policy_losses import ppo_clip
from skyrl_core.algorithms.reductions import (
    ALL_REDUCTIONS,
    REDUCTIONS,
    needs_weights,
    reduce_loss,
    reduction_weights,
    weights_key,
)
from skyrl_core.batches import attach_reduction_weights
from skyrl_core.config.schema import AlgorithmConfig, KLConfig
from skyrl_core.losses import make_policy_loss_fn, make_value_loss_fn
from skyrl_core.protocols.algorithms import AdvantageInput
from skyrl_core.protocols.strategy import ForwardOutput, TrainBatch
from skyrl_core.strategies.micro_batching import loss_scale

# A mini-batch of 8 sequences in 3 prompt groups (4 + 2 + 2 samples). Row 3 is fully masked
# (e.g. an overlong-filtered sample); group 2 (rows 6, 7) is fully masked too.
LENGTHS = [3, 5, 2, 0, 4, 1, 0, 0]
GROUPS = [0, 0, 0, 0, 1, 1, 2, 2]
WIDTH = 6


def loss_and_mask(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1.0 if t < n else 0.0 for t in range(WIDTH)] for n in LENGTHS])
    mask[1, 2] = 0.0  # an environment token inside a response
    loss = torch.randn(len(LENGTHS), WIDTH, generator=g, dtype=torch.float64)
    return loss, mask


def rows_of(loss: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Each row's loss tokens, as plain lists."""
    return [[x for x, m in zip(lr, mr, strict=True) if m] for lr, mr in zip(loss.tolist(), mask.tolist(), strict=True)]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0  # SkyRL's masked_mean: an empty mean is 0 (clamp(min=1))


# -- references: SkyRL's reductions, computed as SkyRL computes them ------------------------------


def skyrl_token_mean_legacy(rows: list[list[float]], micro: int) -> float:
    """Classic SkyRL-train: each micro-batch of ``micro`` sequences reduces to its own token mean,
    and the gradients of the micro-batches are averaged."""
    chunks = [rows[s : s + micro] for s in range(0, len(rows), micro)]
    return sum(mean([x for r in c for x in r]) for c in chunks) / len(chunks)


def skyrl_sequence_mean(rows: list[list[float]]) -> float:
    """SkyRL: ``masked_mean(loss, mask, dim=-1).mean()``: every row counts, an empty one as 0."""
    return sum(mean(r) for r in rows) / len(rows)


def skyrl_prompt_mean(rows: list[list[float]], groups: list[int]) -> float:
    """NovaSky's SkyRL: the token mean of each prompt's samples, averaged over the prompts."""
    prompts = sorted(set(groups))
    return sum(mean([x for r, g in zip(rows, groups, strict=True) if g == p for x in r]) for p in prompts) / len(
        prompts
    )


# -- reductions over the whole mini-batch -----------------------------------------------------------


def test_reduction_names_cover_the_config_schema() -> None:
    import typing

    hint = typing.get_type_hints(AlgorithmConfig)["loss_reduction"]
    assert set(typing.get_args(hint)) == set(ALL_REDUCTIONS)
    terms = typing.get_args(typing.get_type_hints(KLConfig)["reduction"])
    assert set(terms) == {"inherit", *ALL_REDUCTIONS}


@pytest.mark.parametrize("micro", [1, 2, 4])
def test_token_mean_legacy_is_skyrls_per_micro_batch_token_mean(micro: int) -> None:
    loss, mask = loss_and_mask()
    weights = reduction_weights(mask, "token_mean_legacy", micro_batch_sequences=micro, empty_sequences="count")
    got = reduce_loss(loss, mask, "token_mean_legacy", weights=weights).item()
    assert got == pytest.approx(skyrl_token_mean_legacy(rows_of(loss, mask), micro), rel=1e-6)


def test_token_mean_legacy_with_micro_batch_one_is_skyrls_sequence_mean() -> None:
    """The issue's observation: classic SkyRL's token_mean with micro-batch 1 is a per-sequence mean."""
    loss, mask = loss_and_mask()
    legacy = reduction_weights(mask, "token_mean_legacy", micro_batch_sequences=1, empty_sequences="count")
    seq = reduction_weights(mask, "sequence_mean", empty_sequences="count")
    assert torch.allclose(legacy, seq)
    assert reduce_loss(loss, mask, "sequence_mean", weights=seq).item() == pytest.approx(
        skyrl_sequence_mean(rows_of(loss, mask)), rel=1e-6
    )


def test_token_mean_legacy_drops_empty_micro_batches_by_default() -> None:
    loss, mask = loss_and_mask()
    rows = rows_of(loss, mask)
    # micro-batches of 2: rows (0,1), (2,3), (4,5), (6,7); the last has no loss token
    expected = (mean(rows[0] + rows[1]) + mean(rows[2] + rows[3]) + mean(rows[4] + rows[5])) / 3
    weights = reduction_weights(mask, "token_mean_legacy", micro_batch_sequences=2)
    assert reduce_loss(loss, mask, "token_mean_legacy", weights=weights).item() == pytest.approx(expected)
    # a mini-batch that is not a multiple of the micro-batch size: the last micro-batch is shorter
    weights = reduction_weights(mask[:7], "token_mean_legacy", micro_batch_sequences=3)
    short = (mean(rows[0] + rows[1] + rows[2]) + mean(rows[3] + rows[4] + rows[5])) / 2  # (6,) is empty
    assert reduce_loss(loss[:7], mask[:7], "token_mean_legacy", weights=weights).item() == pytest.approx(short)


@pytest.mark.parametrize("empty", ["drop", "count"])
def test_prompt_mean_by_hand(empty: str) -> None:
    loss, mask = loss_and_mask()
    rows = rows_of(loss, mask)
    group0 = rows[0] + rows[1] + rows[2] + rows[3]
    group1 = rows[4] + rows[5]
    n_prompts = 3 if empty == "count" else 2  # group 2 has no loss token
    expected = (mean(group0) + mean(group1)) / n_prompts
    weights = reduction_weights(mask, "prompt_mean", group_ids=torch.tensor(GROUPS), empty_sequences=empty)
    assert reduce_loss(loss, mask, "prompt_mean", weights=weights).item() == pytest.approx(expected, rel=1e-6)
    if empty == "count":
        assert expected == pytest.approx(skyrl_prompt_mean(rows, GROUPS))


def test_prompt_mean_weighs_prompts_not_tokens() -> None:
    """A prompt with long answers weighs as much as one with short answers (unlike token_mean)."""
    mask = torch.tensor([[1.0] * 6, [1.0] * 6, [1.0, 0, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]])
    weights = reduction_weights(mask, "prompt_mean", group_ids=torch.tensor([7, 7, 9, 9]))
    per_prompt = [float(weights[:2].sum()), float(weights[2:].sum())]
    assert per_prompt == pytest.approx([0.5, 0.5])
    token = reduction_weights(mask, "token_mean")
    assert [float(token[:2].sum()), float(token[2:].sum())] == pytest.approx([12 / 14, 2 / 14])


@pytest.mark.parametrize("mode", ["sequence_mean", "seq_mean_token_sum_norm"])
def test_empty_sequences_count_is_skyrls_batch_mean(mode: str) -> None:
    loss, mask = loss_and_mask()
    rows = rows_of(loss, mask)
    norm = 16

    def per_seq(r: list[float]) -> float:
        return mean(r) if mode == "sequence_mean" else sum(r) / norm

    counted = reduction_weights(mask, mode, norm_tokens=norm, empty_sequences="count")
    assert reduce_loss(loss, mask, mode, weights=counted).item() == pytest.approx(
        sum(per_seq(r) for r in rows) / len(rows), rel=1e-6
    )
    # "drop" (the default): the weights reproduce the totals-based reduction exactly
    dropped = reduction_weights(mask, mode, norm_tokens=norm, empty_sequences="drop")
    nonempty = [r for r in rows if r]
    assert reduce_loss(loss, mask, mode, weights=dropped).item() == pytest.approx(
        sum(per_seq(r) for r in nonempty) / len(nonempty), rel=1e-6
    )
    assert reduce_loss(loss, mask, mode, weights=dropped).item() == pytest.approx(
        reduce_loss(loss, mask, mode, norm_tokens=norm).item(), rel=1e-6
    )


@pytest.mark.parametrize("mode", REDUCTIONS)
def test_weights_reproduce_the_totals_reductions(mode: str) -> None:
    loss, mask = loss_and_mask(seed=4)
    weights = reduction_weights(mask, mode, norm_tokens=10)
    assert reduce_loss(loss, mask, mode, weights=weights).item() == pytest.approx(
        reduce_loss(loss, mask, mode, norm_tokens=10).item(), rel=1e-6
    )


@pytest.mark.parametrize(("mode", "empty"), [("prompt_mean", "drop"), ("prompt_mean", "count"),
                                              ("token_mean_legacy", "drop"), ("token_mean_legacy", "count"),
                                              ("sequence_mean", "count"), ("seq_mean_token_sum_norm", "count")])
def test_micro_batches_of_weighted_reductions_sum_to_the_minibatch_loss(mode: str, empty: str) -> None:
    """Gradient accumulation: however the strategy cuts the mini-batch (token budget, ranks), each
    micro-batch's share with the mini-batch's weights adds up to the whole."""
    loss, mask = loss_and_mask(seed=2)
    batch = TrainBatch([[0]] * len(LENGTHS), [list(range(n)) for n in LENGTHS], {"loss_mask": mask, "loss": loss})
    batch.tensors["w"] = reduction_weights(mask, mode, group_ids=torch.tensor(GROUPS), micro_batch_sequences=3,
                                           norm_tokens=12, empty_sequences=empty)
    whole = reduce_loss(loss, mask, mode, weights=batch.tensors["w"]).item()
    for split in ([[0, 1, 2, 3, 4, 5, 6, 7]], [[4, 0], [7, 1, 5], [2, 3, 6]], [[i] for i in range(8)]):
        parts = []
        for idx in split:
            micro = batch.select(idx)
            parts.append(reduce_loss(micro.tensors["loss"], micro.tensors["loss_mask"], mode,
                                     weights=micro.tensors["w"]).item())
        assert sum(parts) == pytest.approx(whole, rel=1e-6)
    assert needs_weights(mode, empty)


def test_minibatch_reductions_refuse_to_run_without_weights() -> None:
    loss, mask = loss_and_mask()
    for mode in ("prompt_mean", "token_mean_legacy"):
        with pytest.raises(ValueError, match="needs per-token weights"):
            reduce_loss(loss, mask, mode)
    with pytest.raises(ValueError, match="group_ids"):
        reduction_weights(mask, "prompt_mean")
    assert not needs_weights("sequence_mean", "drop") and not needs_weights("token_mean", "count")


# -- the policy loss: each term with its own reduction -----------------------------------------------


def rl_minibatch(seed: int = 0) -> tuple[TrainBatch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    _, mask = loss_and_mask(seed)
    n = len(LENGTHS)
    t = {
        "loss_mask": mask,
        "old_logprobs": -torch.rand(n, WIDTH, generator=g) * mask,
        "ref_logprobs": -torch.rand(n, WIDTH, generator=g) * mask,
        "advantages": torch.randn(n, 1, generator=g).expand(n, WIDTH) * mask,
        "returns": torch.randn(n, WIDTH, generator=g) * mask,
        "old_values": torch.randn(n, WIDTH, generator=g) * mask,
    }
    batch = TrainBatch([[1, 2]] * n, [list(range(max(x, 1))) for x in LENGTHS], t)
    logprobs = (t["old_logprobs"] + 0.05 * torch.randn(n, WIDTH, generator=g)) * mask
    return batch, logprobs


def accumulate(fn, batch: TrainBatch, out: dict[str, torch.Tensor], splits: list[list[int]]) -> float:
    """Run a ``LossFn`` micro-batch by micro-batch, as a strategy does, and sum the losses."""
    scale = loss_scale(batch)
    total = 0.0
    for idx in splits:
        micro = batch.select(idx)
        index = torch.tensor(idx)
        fwd = ForwardOutput(**{k: v.index_select(0, index)[:, : micro.response_len] for k, v in out.items()})
        loss, _ = fn(micro, fwd, scale)
        total += loss.item()
    return total


def k3(logp: list[float], ref: list[float]) -> list[float]:
    return [math.exp(r - x) - (r - x) - 1 for x, r in zip(logp, ref, strict=True)]


def test_kl_term_reduced_per_sequence_while_the_policy_loss_is_a_token_mean() -> None:
    """SkyRL: the KL loss is always ``masked_mean(kl, mask, dim=-1).mean()``, whatever loss_reduction says."""
    batch, logprobs = rl_minibatch()
    algo = AlgorithmConfig(loss_reduction="token_mean", empty_sequences="count",
                           kl=KLConfig(mode="loss", reduction="sequence_mean"))
    coef = 0.1
    fn = make_policy_loss_fn(ppo_clip, PPOClipConfig(), algo, 100, coef)
    group_ids = torch.tensor(GROUPS)
    attach_reduction_weights(batch, group_ids, algo, 100)
    assert set(k for k in batch.tensors if k.startswith("reduce_weights/")) == {weights_key("sequence_mean")}

    mask = batch.tensors["loss_mask"]
    token_loss = ppo_clip_reference(logprobs, batch)
    pg = sum(sum(r) for r in rows_of(token_loss, mask)) / mask.sum().item()
    kl_rows = [k3(lp, rf) for lp, rf in zip(rows_of(logprobs, mask), rows_of(batch.tensors["ref_logprobs"], mask),
                                              strict=True)]
    expected = pg + coef * skyrl_sequence_mean(kl_rows)
    got = accumulate(fn, batch, {"logprobs": logprobs}, [[0, 5, 3], [1, 2], [4, 6, 7]])
    assert got == pytest.approx(expected, rel=1e-6)
    # inherit: the KL term follows the token mean
    inherit = attrs.evolve(algo, kl=attrs.evolve(algo.kl, reduction="inherit"))
    fn = make_policy_loss_fn(ppo_clip, PPOClipConfig(), inherit, 100, coef)
    expected = pg + coef * sum(sum(r) for r in kl_rows) / mask.sum().item()
    got = accumulate(fn, batch, {"logprobs": logprobs}, [[0, 1, 2, 3, 4, 5, 6, 7]])
    assert got == pytest.approx(expected, rel=1e-6)


def ppo_clip_reference(logprobs: torch.Tensor, batch: TrainBatch, eps: float = 0.2) -> torch.Tensor:
    out = torch.zeros_like(logprobs, dtype=torch.float64)
    for i in range(logprobs.shape[0]):
        for t in range(logprobs.shape[1]):
            r = math.exp(logprobs[i, t].item() - batch.tensors["old_logprobs"][i, t].item())
            a = batch.tensors["advantages"][i, t].item()
            out[i, t] = max(-a * r, -a * min(max(r, 1 - eps), 1 + eps))
    return out


def test_entropy_bonus_as_skyrls_per_micro_batch_token_mean() -> None:
    batch, logprobs = rl_minibatch(seed=3)
    entropy = torch.rand(logprobs.shape, generator=torch.Generator().manual_seed(9)) * batch.tensors["loss_mask"]
    algo = AlgorithmConfig(loss_reduction="sequence_mean", entropy_coef=0.5, entropy_reduction="token_mean_legacy",
                           legacy_micro_batch_sequences=2, empty_sequences="count")
    fn = make_policy_loss_fn(ppo_clip, PPOClipConfig(), algo, 100, 0.0)
    attach_reduction_weights(batch, torch.tensor(GROUPS), algo, 100)
    mask = batch.tensors["loss_mask"]
    pg_rows = rows_of(ppo_clip_reference(logprobs, batch), mask)
    # sequence_mean with empty_sequences = "count" divides by every row, as SkyRL does
    expected = skyrl_sequence_mean(pg_rows) - 0.5 * skyrl_token_mean_legacy(rows_of(entropy, mask), 2)
    got = accumulate(fn, batch, {"logprobs": logprobs, "entropy": entropy}, [[7, 6, 5], [4, 3, 2, 1, 0]])
    assert got == pytest.approx(expected, rel=1e-6)


def test_value_loss_reduced_per_sequence_like_skyrls_critic() -> None:
    batch, _ = rl_minibatch(seed=5)
    mask = batch.tensors["loss_mask"]
    values = (batch.tensors["old_values"] + 0.3) * mask
    algo = AlgorithmConfig(loss_reduction="token_mean", value_reduction="sequence_mean", empty_sequences="count",
                           value_clip=0.2, value_coef=1.0)
    attach_reduction_weights(batch, torch.tensor(GROUPS), algo, 100)
    fn = make_value_loss_fn(algo, 100)
    rows = []
    for v_row, o_row, g_row in zip(rows_of(values, mask), rows_of(batch.tensors["old_values"], mask),
                                   rows_of(batch.tensors["returns"], mask), strict=True):
        row = []
        for v, o, g in zip(v_row, o_row, g_row, strict=True):
            clipped = o + min(max(v - o, -0.2), 0.2)
            row.append(0.5 * max((v - g) ** 2, (clipped - g) ** 2))
        rows.append(row)
    got = accumulate(fn, batch, {"values": values}, [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert got == pytest.approx(skyrl_sequence_mean(rows), rel=1e-6)


def test_a_loss_fn_without_its_weights_says_what_to_do() -> None:
    batch, logprobs = rl_minibatch()
    algo = AlgorithmConfig(loss_reduction="prompt_mean")
    fn = make_policy_loss_fn(ppo_clip, PPOClipConfig(), algo, 100, 0.0)
    with pytest.raises(ValueError, match="attach_reduction_weights"):
        fn(batch, ForwardOutput(logprobs=logprobs), loss_scale(batch))


def test_reductions_resolve_inherit() -> None:
    algo = AlgorithmConfig(loss_reduction="prompt_mean", value_reduction="sequence_mean")
    assert algo.reduction("policy") == "prompt_mean"
    assert algo.reduction("kl") == "prompt_mean" and algo.reduction("entropy") == "prompt_mean"
    assert algo.reduction("value") == "sequence_mean"


# -- whitening: population vs Bessel -------------------------------------------------------------------


def whiten_reference(values: list[float], bessel: bool, eps: float) -> list[float]:
    n = len(values)
    mu = sum(values) / n
    var = sum((x - mu) ** 2 for x in values) / (n - 1 if bessel else n)
    return [(x - mu) / (math.sqrt(var) + eps) for x in values]


ADV_MASK = [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
ADV_REWARDS = [[0, 0, 1.0, 0], [0, 0.5, 0, 0], [0, 0, 0, 0.0], [2.0, 0, 0, 0]]


def adv_input(values: bool = False) -> AdvantageInput:
    mask = torch.tensor(ADV_MASK, dtype=torch.float64)
    rewards = torch.tensor(ADV_REWARDS, dtype=torch.float64)
    v = torch.linspace(-0.5, 0.5, 16, dtype=torch.float64).reshape(4, 4) * mask if values else None
    return AdvantageInput(rewards, mask, torch.tensor([0, 0, 1, 1]), v)


def masked_list(x: torch.Tensor) -> list[float]:
    return [v for row, m in zip(x.tolist(), ADV_MASK, strict=True) for v, b in zip(row, m, strict=True) if b]


@pytest.mark.parametrize("variance", ["population", "bessel"])
def test_reinforce_pp_whitens_with_the_chosen_variance(variance: str) -> None:
    out = reinforce_pp(adv_input(), ReinforcePPConfig(whiten_variance=variance))
    # gamma = 1: each model token's return is the rest of its row's rewards
    returns = [sum(r[t:]) for r, m in zip(ADV_REWARDS, ADV_MASK, strict=True) for t in range(4) if m[t]]
    expected = whiten_reference(returns, variance == "bessel", 1e-8)
    assert masked_list(out.advantages) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("variance", ["population", "bessel"])
def test_reinforce_pp_baseline_whitens_with_the_chosen_variance(variance: str) -> None:
    out = reinforce_pp_baseline(adv_input(), ReinforcePPConfig(whiten_variance=variance))
    scores = [sum(r) for r in ADV_REWARDS]
    base = [(scores[0] + scores[1]) / 2] * 2 + [(scores[2] + scores[3]) / 2] * 2
    returns = []
    for i, (r, m) in enumerate(zip(ADV_REWARDS, ADV_MASK, strict=True)):
        last = max(t for t in range(4) if m[t])
        shifted = [x - (base[i] if t == last else 0.0) for t, x in enumerate(r)]
        returns += [sum(shifted[t:]) for t in range(4) if m[t]]
    assert masked_list(out.advantages) == pytest.approx(whiten_reference(returns, variance == "bessel", 1e-8))


@pytest.mark.parametrize("variance", ["population", "bessel"])
def test_gae_whitens_with_the_chosen_variance(variance: str) -> None:
    inp = adv_input(values=True)
    out = gae(inp, GAEConfig(whiten_variance=variance))
    raw = gae(inp, GAEConfig(whiten=False))
    assert masked_list(out.advantages) == pytest.approx(
        whiten_reference(masked_list(raw.advantages), variance == "bessel", 1e-8), rel=1e-6
    )
    assert torch.equal(out.returns, raw.returns)  # returns are taken before whitening


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_batch_normalize_whitens_with_the_chosen_variance(estimator: str) -> None:
    fn, cls = (grpo, GRPOConfig) if estimator == "grpo" else (rloo, RLOOConfig)
    plain = fn(adv_input(), cls())
    for variance in ("population", "bessel"):
        out = fn(adv_input(), cls(batch_normalize=True, whiten_variance=variance))
        expected = whiten_reference(masked_list(plain.advantages), variance == "bessel", 1e-8)
        assert masked_list(out.advantages) == pytest.approx(expected, rel=1e-6)


def test_bessel_and_population_differ_by_the_sqrt_of_n_over_n_minus_1() -> None:
    pop = masked_list(reinforce_pp(adv_input(), ReinforcePPConfig()).advantages)
    bes = masked_list(reinforce_pp(adv_input(), ReinforcePPConfig(whiten_variance="bessel")).advantages)
    n = sum(map(sum, ADV_MASK))
    for p, b in zip(pop, bes, strict=True):
        assert p == pytest.approx(b * math.sqrt(n / (n - 1)), rel=1e-6)


# -- GRPO's group of one ----------------------------------------------------------------------------


@pytest.mark.parametrize("norm_by_std", [True, False])
def test_grpo_singleton_conventions(norm_by_std: bool) -> None:
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [3.0, 0.0], [0.0, 0.7]])
    mask = torch.ones(4, 2)
    groups = torch.tensor([0, 0, 1, 2])  # group 0 of two, groups 1 and 2 alone
    eps = 1e-6
    zero = grpo(AdvantageInput(rewards, mask, groups), GRPOConfig(norm_by_std=norm_by_std, epsilon=eps))
    skyrl = grpo(AdvantageInput(rewards, mask, groups),
                 GRPOConfig(norm_by_std=norm_by_std, epsilon=eps, singleton_advantage="score"))
    # the pair: mean 0.5, unbiased std sqrt(0.5)
    pair = [0.5, -0.5]
    if norm_by_std:
        pair = [x / (math.sqrt(0.5) + eps) for x in pair]
    single = [3.0, 0.7]
    if norm_by_std:
        single = [s / (1 + eps) for s in single]  # SkyRL: mean 0, std 1
    assert zero.advantages[:, 0].tolist() == pytest.approx([*pair, 0.0, 0.0], rel=1e-6)
    assert skyrl.advantages[:, 0].tolist() == pytest.approx(pair + single, rel=1e-6)
    assert torch.equal(skyrl.advantages, skyrl.returns)

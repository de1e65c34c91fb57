"""SkyRL's algorithms, conventions and options through the real training loop (tiny model, CPU).

The rewards get variety from a reward-shaping hook of a test plugin (the untrained tiny model
almost never answers correctly), which also records every training round's groups and rewards so
the zero-variance filter can be checked against them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
import torch
from safetensors.torch import load_file, save_file
from trainer_support import metrics, write_config

from skyrl_core import hookimpl
from skyrl_core.components import resolve_components
from skyrl_core.config.loader import load_config
from skyrl_core.contracts import ContractError
from skyrl_core.errors import ConfigError
from skyrl_core.testing import fresh_registry
from skyrl_core.trainer import train


class ShapingRecorder:
    """Test plugin: reward 1 for a sample whose token ids sum to a multiple of 3 (variety within most
    groups, and about one group in five uniform), recorded per training round."""

    rounds: ClassVar[list[list[tuple[int, float, int]]]] = []

    @hookimpl
    def skyrl_shape_rewards(self, run: Any, batch: Any) -> None:
        for t in batch.trajectories:
            live = [i for i, m in enumerate(t.loss_mask) if m]
            if live and sum(t.response_ids) % 3 == 0:
                t.token_rewards[live[-1]] += 1.0
        ShapingRecorder.rounds.append([(t.group_id, t.reward, sum(t.loss_mask)) for t in batch.trajectories])


@pytest.fixture
def registry():
    ShapingRecorder.rounds = []
    return fresh_registry(ShapingRecorder())


def uniform_groups(round_: list[tuple[int, float, int]]) -> int:
    """Reference: groups with at least two live samples whose rewards are all equal."""
    groups: dict[int, list[float]] = {}
    for gid, reward, live in round_:
        if live:
            groups.setdefault(gid, []).append(reward)
    return sum(1 for rewards in groups.values() if len(rewards) > 1 and max(rewards) - min(rewards) <= 1e-6)


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(path).items()}


def run(tmp_path: Path, registry, extra: str, overrides: list[str] = (), steps: int = 2) -> dict[int, dict]:
    cfg_path = write_config(tmp_path, steps=steps, extra=extra)
    cfg = load_config(cfg_path, ["eval.before_train=false", "checkpoint.export_at_end=false", *overrides], registry)
    train(cfg, registry)
    return metrics(tmp_path / "run")


def trained(rows: dict[int, dict], steps: int) -> None:
    for step in range(1, steps + 1):
        row = rows[step]
        assert torch.isfinite(torch.tensor(row["policy/loss"])), step
        assert row["policy/grad_norm"] > 0 and row["policy/skipped"] == 0.0, step


@pytest.mark.parametrize(("loss", "table"), [
    ("sapo", "tau_pos = 1.0\ntau_neg = 1.05\n"),
    ("importance_sampling", ""),
    ("rollout_is", "eps_low = 0.2\neps_high = 0.2\n"),
    ("cross_entropy", ""),
])
def test_new_policy_losses_train_through_the_loop(tmp_path: Path, registry, loss: str, table: str) -> None:
    extra = f'\n[algorithm]\nloss_reduction = "sequence_mean"\n\n[algorithm.policy_loss]\nname = "{loss}"\n{table}'
    rows = run(tmp_path, registry, extra)
    trained(rows, 2)
    start = weights_of(tmp_path / "model" / "model.safetensors")
    after = weights_of(tmp_path / "run" / "checkpoints" / "step-000002" / "model.safetensors")
    assert any(not torch.equal(start[k], after[k]) for k in start if k in after)
    if loss == "rollout_is":
        assert 0.0 <= rows[1]["policy/clip_frac"] <= 1.0


def test_skyrl_conventions_train_through_the_loop(tmp_path: Path, registry) -> None:
    """Every convention option at once, as a SkyRL user would set them, with a critic (gae)."""
    extra = """
[algorithm]
loss_reduction = "token_mean_legacy"
legacy_micro_batch_sequences = 2
empty_sequences = "count"
entropy_coef = 0.001
entropy_reduction = "token_mean_legacy"
value_reduction = "sequence_mean"
zero_variance_filter = "mask"

[algorithm.kl]
mode = "loss"
reduction = "sequence_mean"

[algorithm.tis]
mode = "sequence"
cap = 5.0
sequence_mask = "geometric"
outlier_token_low = 1e-4
outlier_token_high = 100.0

[algorithm.advantage]
name = "gae"
whiten_variance = "bessel"
"""
    path = write_config(tmp_path, steps=2, extra=extra)
    # the tiny config's own [model] table takes the template variables (the template ignores them)
    kwargs = "chat_template_kwargs = {enable_thinking = false}\n"
    path.write_text(path.read_text().replace("[model]\n", "[model]\n" + kwargs, 1))
    cfg = load_config(path, ["eval.before_train=false", "checkpoint.export_at_end=false"], registry)
    assert cfg.model.chat_template_kwargs == {"enable_thinking": False}
    train(cfg, registry)
    rows = metrics(tmp_path / "run")
    trained(rows, 2)
    for step in (1, 2):
        row = rows[step]
        assert row["rollout/zero_variance_groups"] == uniform_groups(ShapingRecorder.rounds[step - 1])
        assert "policy/kl_ref" in row and "critic/loss" in row and "policy/tis_seq_masked_frac" in row
        assert "policy/tis_outlier_seq_masked_frac" in row


def test_zero_variance_drop_removes_the_uniform_groups(tmp_path: Path, registry) -> None:
    rows = run(tmp_path, registry, '\n[algorithm]\nzero_variance_filter = "drop"\n')
    trained(rows, 2)
    for step in (1, 2):
        expected = uniform_groups(ShapingRecorder.rounds[step - 1])
        assert rows[step]["rollout/zero_variance_groups"] == expected
        assert rows[step]["rollout/zero_variance_frac"] == expected / 4


def test_a_step_whose_groups_are_all_dropped_trains_nothing(tmp_path: Path) -> None:
    """Without the shaping plugin and with zero_reward_on_non_stop, the tiny model's cut-off answers all
    score 0: every group is uniform and dropped, the step has nothing to train on, and the run goes on."""
    registry = fresh_registry()
    extra = '\n[algorithm]\nzero_variance_filter = "drop"\n'
    rows = run(tmp_path, registry, extra, ["generator.zero_reward_on_non_stop=true"])
    for step in (1, 2):
        assert rows[step]["reward/mean"] == 0.0 and rows[step]["reward/zeroed_non_stop"] > 0
        assert rows[step]["rollout/zero_variance_groups"] == 4 and rows[step]["rollout/zero_variance_frac"] == 1.0
        assert "policy/grad_norm" not in rows[step] and "timing/weight_sync" in rows[step]
    start = weights_of(tmp_path / "model" / "model.safetensors")
    after = weights_of(tmp_path / "run" / "checkpoints" / "step-000002" / "model.safetensors")
    assert all(torch.equal(start[k], after[k]) for k in start if k in after)


def test_update_ref_every_epoch_copies_the_policy_after_each_epoch(tmp_path: Path, registry) -> None:
    # 8 training prompts, 4 per step: an epoch is 2 steps; the last step does not update the reference
    extra = '\n[algorithm.kl]\nmode = "loss"\nupdate_ref_every_epoch = true\n'
    rows = run(tmp_path, registry, extra, ["data.generate_options.train_rows=8"], steps=3)
    assert "policy/ref_updated" not in rows[1] and rows[2]["policy/ref_updated"] == 1.0
    assert "policy/ref_updated" not in rows[3]
    ckpts = tmp_path / "run" / "checkpoints"
    at2, at3 = ckpts / "step-000002", ckpts / "step-000003"
    policy2, ref2 = weights_of(at2 / "model.safetensors"), weights_of(at2 / "ref.safetensors")
    assert all(torch.equal(policy2[k], ref2[k]) for k in ref2)
    ref3, policy3 = weights_of(at3 / "ref.safetensors"), weights_of(at3 / "model.safetensors")
    assert all(torch.equal(ref3[k], ref2[k]) for k in ref3)  # frozen until the next epoch ends
    assert any(not torch.equal(policy3[k], ref3[k]) for k in ref3)
    start = weights_of(tmp_path / "model" / "model.safetensors")
    assert any(not torch.equal(start[k], ref2[k]) for k in ref2 if k in start)


def perturbed_copy(src: Path, dst: Path, seed: int) -> Path:
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    g = torch.Generator().manual_seed(seed)
    save_file({k: (v + 0.05 * torch.randn(v.shape, generator=g)).to(v.dtype).contiguous() if v.is_floating_point()
               else v for k, v in weights.items()}, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_ref_path_and_critic_path_through_the_loop(tmp_path: Path, registry) -> None:
    # build the tiny model once (a 1-step run), then copy it with other weights
    run(tmp_path / "first", registry, "", steps=1)
    other = perturbed_copy(tmp_path / "first" / "model", tmp_path / "other", seed=1)
    extra = """
[algorithm.kl]
mode = "loss"

[algorithm.advantage]
name = "gae"
"""
    # one mini-batch: the KL of step 1 is measured before any update
    overrides = [f"model.ref_path={other}", f"model.critic_path={other}", "trainer.prompts_per_minibatch=4"]
    rows = run(tmp_path / "second", registry, extra, overrides, steps=1)
    trained(rows, 1)
    # the reference is the other checkpoint: KL is far from 0 at the first step (the policy is the tiny model)
    assert rows[1]["policy/kl_ref"] > 1e-3
    ref = weights_of(tmp_path / "second" / "run" / "checkpoints" / "step-000001" / "ref.safetensors")
    assert all(torch.equal(ref[k], v) for k, v in weights_of(other / "model.safetensors").items() if k in ref)
    baseline = run(tmp_path / "third", registry, '\n[algorithm.kl]\nmode = "loss"\n', overrides[2:], steps=1)
    assert baseline[1]["policy/kl_ref"] < 1e-6  # the default reference is the policy itself


# -- config and capability errors ------------------------------------------------------------------


def issues_of(tmp_path: Path, registry, extra: str, overrides: list[str] = ()) -> str:
    cfg_path = write_config(tmp_path, steps=1, extra=extra)
    with pytest.raises(ConfigError) as info:
        load_config(cfg_path, list(overrides), registry)
    return str(info.value)


def test_options_that_need_each_other_are_config_errors(tmp_path: Path, registry) -> None:
    text = issues_of(tmp_path, registry, '\n[algorithm.kl]\nupdate_ref_every_epoch = true\n',
                     ["model.ref_path=somewhere"])
    assert "model.ref_path: is set, but no run step uses it" in text
    assert "algorithm.kl.update_ref_every_epoch: needs a reference model" in text
    text = issues_of(tmp_path, registry, "\n[algorithm.tis]\ntoken_mask_low = 0.5\nproduct_low = 3.0\n")
    assert "algorithm.tis.token_mask_low: the token mask needs both" in text
    assert "algorithm.tis.product_low: 3.0 must be below algorithm.tis.product_high = 2.0" in text
    text = issues_of(tmp_path, registry, '\n[algorithm]\nloss_reduction = "prompt_means"\n')
    assert "prompt_mean" in text


def test_capabilities_are_checked_before_any_model_loads(tmp_path: Path, registry) -> None:
    cfg = load_config(write_config(tmp_path, steps=1), ["model.critic_path=elsewhere"], registry)
    with pytest.raises(ConfigError, match=r"model\.critic_path: is set, but advantage estimator 'grpo' trains no"):
        resolve_components(cfg, registry)

    class NoReset:
        """A strategy with the whole contract but no reset_ref (a test double: never built)."""

        def __init__(self, config, *, model, trainer, seed, need_ref, need_critic, total_optimizer_steps): ...
        def forward(self, batch, *, role="policy", temperature=1.0, need_entropy=False): ...
        def train_step(self, batch, loss_fn, *, role="policy", temperature=1.0, need_entropy=False): ...
        def named_weights(self, bucket_bytes=0): ...
        def save_checkpoint(self, path): ...
        def load_checkpoint(self, path): ...
        def export_hf(self, path, tokenizer): ...
        def offload(self): ...
        def onload(self): ...

    from skyrl_core import ComponentSpec

    class Plugin:
        @hookimpl
        def skyrl_register_strategies(self) -> list[ComponentSpec]:
            return [ComponentSpec("no_reset", NoReset, "test strategy")]

    registry = fresh_registry(Plugin())
    cfg = load_config(write_config(tmp_path, steps=1, extra='\n[strategy]\nname = "no_reset"\n'),
                      ["algorithm.kl.mode=loss", "algorithm.kl.update_ref_every_epoch=true"], registry)
    with pytest.raises(ContractError, match="update_ref_every_epoch = true needs a strategy that can copy"):
        resolve_components(cfg, registry)
    ok = attrs.evolve(cfg, algorithm=attrs.evolve(cfg.algorithm, kl=attrs.evolve(cfg.algorithm.kl,
                                                                                 update_ref_every_epoch=False)))
    resolve_components(ok, registry)

"""The derived batch plan: every batch quantity, in its unit, computed in one place.

Units: *prompts* are dataset rows; *sequences* are samples (``samples_per_prompt`` per
prompt); *tokens* bound micro-batches. ``skyrl config show`` prints this plan.
"""

from __future__ import annotations

import math

import attrs

from skyrl_core.config.schema import RunConfig
from skyrl_core.errors import ConfigIssue


@attrs.frozen
class BatchPlan:
    """Derived batch sizes of one training step."""

    prompts_per_step: int
    samples_per_prompt: int
    sequences_per_step: int
    prompts_per_minibatch: int
    sequences_per_minibatch: int
    minibatches_per_step: int
    epochs_per_step: int
    optimizer_steps_per_step: int
    total_optimizer_steps: int
    max_sequence_tokens: int
    micro_batch_tokens: int
    min_sequences_per_micro_batch: int
    max_micro_batches_per_minibatch: int
    loss_norm_tokens: int

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for printing."""
        return [
            ("prompts per step", str(self.prompts_per_step)),
            ("samples per prompt", str(self.samples_per_prompt)),
            ("sequences per step", str(self.sequences_per_step)),
            ("prompts per mini-batch", str(self.prompts_per_minibatch)),
            ("sequences per mini-batch", str(self.sequences_per_minibatch)),
            ("mini-batches per step", str(self.minibatches_per_step)),
            ("epochs per step", str(self.epochs_per_step)),
            ("optimizer steps per step", str(self.optimizer_steps_per_step)),
            ("optimizer steps in the run", str(self.total_optimizer_steps)),
            ("longest possible sequence (tokens)", str(self.max_sequence_tokens)),
            ("micro-batch token budget", str(self.micro_batch_tokens)),
            ("sequences per micro-batch (worst case)", str(self.min_sequences_per_micro_batch)),
            ("micro-batches per mini-batch (worst case)", str(self.max_micro_batches_per_minibatch)),
            ("loss normaliser of seq_mean_token_sum_norm (tokens)", str(self.loss_norm_tokens)),
        ]


def max_sequence_tokens(cfg: RunConfig) -> int:
    """The longest prompt + response a trajectory can reach."""
    gen = cfg.generator
    single = cfg.data.max_prompt_tokens + gen.max_new_tokens
    if gen.max_turns == 1:
        return min(gen.max_total_tokens, single)
    return gen.max_total_tokens


def make_plan(cfg: RunConfig) -> BatchPlan:
    """Compute the plan (assumes ``plan_issues(cfg)`` is empty)."""
    t = cfg.trainer
    per_mb = t.prompts_per_minibatch or t.prompts_per_step
    minibatches = max(1, t.prompts_per_step // per_mb)
    longest = max_sequence_tokens(cfg)
    seqs_per_mb = per_mb * t.samples_per_prompt
    # the constant of seq_mean_token_sum_norm: the most tokens a sequence may hold
    norm_tokens = cfg.algorithm.loss_norm_tokens or (cfg.data.max_prompt_tokens + cfg.generator.max_total_tokens)
    per_micro = max(1, t.micro_batch_tokens // max(1, longest))
    return BatchPlan(
        prompts_per_step=t.prompts_per_step,
        samples_per_prompt=t.samples_per_prompt,
        sequences_per_step=t.prompts_per_step * t.samples_per_prompt,
        prompts_per_minibatch=per_mb,
        sequences_per_minibatch=seqs_per_mb,
        minibatches_per_step=minibatches,
        epochs_per_step=t.epochs_per_step,
        optimizer_steps_per_step=minibatches * t.epochs_per_step,
        total_optimizer_steps=minibatches * t.epochs_per_step * t.steps,
        max_sequence_tokens=longest,
        micro_batch_tokens=t.micro_batch_tokens,
        min_sequences_per_micro_batch=per_micro,
        max_micro_batches_per_minibatch=math.ceil(seqs_per_mb / per_micro),
        loss_norm_tokens=norm_tokens,
    )


def plan_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """Cross-field consistency checks of batch sizes and related options."""
    t = cfg.trainer
    out: list[ConfigIssue] = []
    per_mb = t.prompts_per_minibatch
    if per_mb is not None and per_mb > 0 and t.prompts_per_step > 0:
        if per_mb > t.prompts_per_step:
            out.append(
                ConfigIssue(
                    "trainer.prompts_per_minibatch",
                    f"{per_mb} is larger than trainer.prompts_per_step = {t.prompts_per_step}",
                )
            )
        elif t.prompts_per_step % per_mb:
            divisors = [d for d in range(1, t.prompts_per_step + 1) if t.prompts_per_step % d == 0]
            out.append(
                ConfigIssue(
                    "trainer.prompts_per_minibatch",
                    f"{per_mb} does not divide trainer.prompts_per_step = {t.prompts_per_step}; use one of {divisors}",
                )
            )
    if cfg.eval.pass_k and max(cfg.eval.pass_k) > cfg.eval.samples_per_prompt:
        out.append(
            ConfigIssue(
                "eval.pass_k",
                f"pass@{max(cfg.eval.pass_k)} needs eval.samples_per_prompt >= {max(cfg.eval.pass_k)} "
                f"(it is {cfg.eval.samples_per_prompt})",
            )
        )
    if cfg.algorithm.kl.adaptive and cfg.algorithm.kl.mode != "reward":
        out.append(
            ConfigIssue("algorithm.kl.adaptive", "the adaptive KL controller needs algorithm.kl.mode = 'reward'")
        )
    out += _algorithm_issues(cfg)
    if cfg.generator.max_new_tokens >= cfg.generator.max_total_tokens:
        out.append(
            ConfigIssue(
                "generator.max_new_tokens",
                f"{cfg.generator.max_new_tokens} leaves no room for the prompt within "
                f"generator.max_total_tokens = {cfg.generator.max_total_tokens}",
            )
        )
    if cfg.data.generate and (len(cfg.data.train) > 1 or len(cfg.data.eval) > 1):
        out.append(ConfigIssue("data.generate", "needs at most one train file and one eval file"))
    return out + _tiny_model_issues(cfg)


def _algorithm_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """Options that only mean something together: the reference model's, and the bounds of
    ``[algorithm.tis]``'s masks."""
    algo, out = cfg.algorithm, []
    no_ref = "needs a reference model, but [algorithm.kl] mode = 'none' (set mode = 'loss' or 'reward')"
    if algo.kl.mode == "none":
        if cfg.model.ref_path is not None:
            out.append(ConfigIssue("model.ref_path", f"is set, but no run step uses it: it {no_ref}; remove it"))
        if algo.kl.update_ref_every_epoch:
            out.append(ConfigIssue("algorithm.kl.update_ref_every_epoch", no_ref))
    tis = algo.tis
    if (tis.token_mask_low is None) != (tis.token_mask_high is None):
        given = "token_mask_low" if tis.token_mask_low is not None else "token_mask_high"
        out.append(ConfigIssue(f"algorithm.tis.{given}", "the token mask needs both token_mask_low and "
                               "token_mask_high (the ratio band whose tokens are kept)"))
    for low, high in (("token_mask_low", "token_mask_high"), ("outlier_token_low", "outlier_token_high"),
                      ("geometric_low", "geometric_high"), ("product_low", "product_high")):
        lo, hi = getattr(tis, low), getattr(tis, high)
        if lo is not None and hi is not None and not lo < hi:
            out.append(ConfigIssue(f"algorithm.tis.{low}", f"{lo} must be below algorithm.tis.{high} = {hi}"))
    return out


def _tiny_model_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """The shapes a tiny model's attention needs: whole heads, whole key/value groups, and an even
    head size (rotary embeddings rotate pairs of dimensions)."""
    tiny = cfg.model.tiny
    if tiny is None or min(tiny.hidden_size, tiny.heads, tiny.kv_heads) <= 0:
        return []
    if tiny.hidden_size % tiny.heads:
        return [ConfigIssue("model.tiny.heads", f"{tiny.heads} does not divide model.tiny.hidden_size = "
                            f"{tiny.hidden_size}; each head gets hidden_size / heads dimensions")]
    if (tiny.hidden_size // tiny.heads) % 2:
        return [ConfigIssue("model.tiny.heads", f"gives heads of {tiny.hidden_size // tiny.heads} dimensions "
                            f"(model.tiny.hidden_size = {tiny.hidden_size} / {tiny.heads}); rotary embeddings need "
                            "an even number")]
    if tiny.heads % tiny.kv_heads:
        return [ConfigIssue("model.tiny.kv_heads", f"{tiny.kv_heads} does not divide model.tiny.heads = "
                            f"{tiny.heads}; grouped-query attention shares each key/value head among whole groups")]
    return []

"""The typed schema of a run's TOML file.

Each class is one TOML table. Tables that select a component by name (``[backend]``,
``[strategy]``, ``[algorithm.advantage]``, ``[algorithm.policy_loss]``) are
``ComponentRef``s: ``name`` picks the component and every other key of the table is
validated against that component's own config class. ``[environments.<name>]``,
``[tracking.<name>]`` and plugin-owned top-level tables (e.g. ``[dapo]``) are validated
against their owners' config classes the same way.

This module is torch-free so that ``skyrl config validate`` starts fast.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from skyrl_core.config.fields import (
    Range,
    all_positive,
    at_least,
    device_spec,
    fraction,
    non_negative,
    option,
    positive,
    seed_range,
    unit_interval,
)
from skyrl_core.config.slots import default_name
from skyrl_core.specs import Kind

LossReductionName = Literal[
    "token_mean", "sequence_mean", "seq_mean_token_sum_norm", "prompt_mean", "token_mean_legacy"
]
TermReduction = Literal[
    "inherit", "token_mean", "sequence_mean", "seq_mean_token_sum_norm", "prompt_mean", "token_mean_legacy"
]


@attrs.define(kw_only=True)
class ComponentRef:
    """A component chosen by name plus its validated options (the rest of its table)."""

    name: str = option(help="Name of the component (see `skyrl components`).")
    config: Any = option(None, help="The component's own options, validated by its config class.")


@attrs.define(kw_only=True)
class RunSection:
    """``[run]``: naming, output location and seeding."""

    name: str = option("skyrl", help="Run name; used in the default run directory and by trackers.")
    dir: str = option(
        "runs/{name}",
        help="Run directory (metrics, checkpoints, export, plot). `{name}` is replaced by the run name. "
        "Relative paths are relative to the current working directory.",
    )
    seed: int = option(42, help="Seed for data order, sampling and initialisation.", check=seed_range)


@attrs.define(kw_only=True)
class TinyModelConfig:
    """``[model.tiny]``: build a small random model + tokenizer locally when ``path`` is missing."""

    arch: Literal["qwen2", "llama"] = option("qwen2", help="Model family of the tiny model.")
    hidden_size: int = option(128, help="Hidden size.", check=positive)
    layers: int = option(2, help="Number of decoder layers.", check=positive)
    heads: int = option(4, help="Attention heads.", check=positive)
    kv_heads: int = option(2, help="Key/value heads (grouped-query attention).", check=positive)
    intermediate_size: int = option(256, help="MLP width.", check=positive)
    vocab_size: int = option(
        512, help="Target BPE vocabulary size (the trained vocabulary may be smaller).", check=positive
    )
    corpus: str = option(
        "arithmetic",
        help="Text the BPE tokenizer is trained on: 'arithmetic' (digits, operators, the "
        "quickstart task's wording) or a path to a text file.",
    )


def _check_target_modules(value: Any) -> str | None:
    if not value:
        return 'must name at least one module, e.g. ["all-linear"] or ["q_proj", "v_proj"]'
    if "all-linear" in value and len(value) > 1:
        return "'all-linear' already selects every linear layer; give it alone (use exclude_modules to drop some)"
    return None


@attrs.define(kw_only=True)
class LoraConfig:
    """``[model.lora]``: train low-rank adapters (LoRA, through ``peft``) instead of every weight."""

    rank: int = option(
        0, help="Rank r of the adapters (0 = off: full fine-tuning). Typical: 8 to 64.", check=non_negative
    )
    alpha: float = option(
        16.0, help="Scaling numerator: the adapter's update is multiplied by alpha / rank.", check=positive
    )
    dropout: float = option(
        0.0,
        help="Dropout on the adapters' input in training passes (not in the no-grad log-prob passes, so "
        "keep 0 for RL unless you want that mismatch).",
        check=Range(ge=0, lt=1),
    )
    target_modules: list[str] = option(
        factory=lambda: ["all-linear"],
        help='Layers that get adapters: ["all-linear"] (every linear layer but the output layer) or '
        'module names / suffixes such as ["q_proj", "v_proj"].',
        check=_check_target_modules,
    )
    exclude_modules: list[str] = option(
        factory=list, help='Module names / suffixes left without adapters (e.g. ["down_proj"]).'
    )
    sync: Literal["auto", "merged", "adapter"] = option(
        "auto",
        help="What reaches the inference engine: 'merged' (full weights, base + adapter delta, under the "
        "base model's names), 'adapter' (only the adapter; the engine must declare LoRA support), "
        "'auto' (adapter when the engine supports it, else merged).",
    )
    export: Literal["merged", "adapter"] = option(
        "merged",
        help="What the end-of-run and `skyrl export` folders hold: a merged Hugging Face model, or the "
        "adapter alone in peft format (load it with peft on top of the base model).",
    )


@attrs.define(kw_only=True)
class ModelConfig:
    """``[model]``: the policy model and its tokenizer."""

    path: str = option(help="A Hugging Face model folder (or hub id when the hub is reachable).")
    tokenizer: str | None = option(None, help="Tokenizer folder or id; defaults to `path`.")
    dtype: Literal["float32", "bfloat16", "float16"] = option(
        "float32", help="Parameter dtype for training; bf16 uses autocast with fp32 master weights."
    )
    device: str = option(
        "auto", help="'auto' (CUDA when available, else CPU), 'cpu', 'cuda' or 'cuda:N'.", check=device_spec
    )
    attn_implementation: str = option(
        "sdpa",
        help="transformers attention implementation. On the CPU, 'sdpa' loads as 'skyrl_sdpa': the same SDPA with "
        "grouped-query attention inside the kernel where transformers would copy each key/value head per query "
        "head (masked batches: padding, shared prompts); same results, fewer copies (skyrl_core.models.attention).",
    )
    trust_remote_code: bool = option(False, help="Allow custom modelling code from the model folder.")
    chat_template: str | None = option(
        None, help="A Jinja chat template (inline) or a path to a .jinja file, replacing the tokenizer's."
    )
    chat_template_kwargs: dict[str, Any] = option(
        factory=dict,
        help="Extra variables for the chat template, passed to every apply_chat_template call (prompts, "
        "multi-turn observations, the length filter, SFT), e.g. {enable_thinking = false} for Qwen3 "
        "(SkyRL's generator.chat_template_kwargs).",
    )
    ref_path: str | None = option(
        None,
        help="Initialise the reference policy (KL) from this Hugging Face model folder instead of the policy's "
        "initial weights. It must use the policy's tokenizer; its architecture may differ. (SkyRL: "
        "trainer.ref.model.path)",
    )
    critic_path: str | None = option(
        None,
        help="Initialise the critic's transformer body from this causal-LM folder instead of the policy's; "
        "the value head is new. It must use the policy's tokenizer. (SkyRL: trainer.critic.model.path)",
    )
    tiny: TinyModelConfig | None = option(
        None, help="When set and `path` does not exist, build a tiny model + tokenizer there first."
    )
    lora: LoraConfig = option(factory=LoraConfig, help="[model.lora] (LoRA adapters; rank 0 = off)")


@attrs.define(kw_only=True)
class DataConfig:
    """``[data]``: training and evaluation datasets (SkyRL row format, see docs/data.md)."""

    train: list[str] = option(factory=list, help="Training files (.parquet, .json, .jsonl) or hub ids `name[:split]`.")
    eval: list[str] = option(factory=list, help="Evaluation files, same forms as `train`.")
    max_prompt_tokens: int = option(
        512, help="Rows whose templated prompt is longer are dropped (the count is reported).", check=positive
    )
    shuffle: bool = option(True, help="Shuffle the training rows each epoch (seeded).")
    default_env_class: str | None = option(None, help="Environment for rows whose `env_class` is missing or null.")
    env_map: dict[str, str] = option(
        factory=dict,
        help="Environments that replace the ones rows name (after default_env_class), e.g. "
        '{ gsm8k = "skyrl-env-skyrlgym:gsm8k" } scores SkyRL data with skyrl-gym\'s own gsm8k; options come '
        "from the [environments.<replacement>] table.",
    )
    generate: str | None = option(
        None,
        help="Create the data files when missing, with this dataset preparer (e.g. 'arithmetic'); "
        "train/eval must then be a single file each.",
    )
    generate_options: dict[str, Any] = option(
        factory=dict,
        help="Options passed to the `data.generate` preparer (its own keys, e.g. digits = 1), validated "
        "against its config class.",
    )


@attrs.define(kw_only=True)
class GeneratorConfig:
    """``[generator]``: how rollouts are sampled and how the turn loop is bounded."""

    max_new_tokens: int = option(256, help="Maximum tokens the model generates per turn.", check=positive)
    max_turns: int = option(1, help="Maximum model turns per trajectory (multi-turn environments).", check=positive)
    max_total_tokens: int = option(
        4096,
        help="Maximum prompt + response tokens of a trajectory; the episode ends with finish "
        "reason 'length' when reached.",
        check=positive,
    )
    temperature: float = option(
        1.0, help="Sampling temperature (the trainer applies the same one to its log-probs).", check=non_negative
    )
    top_p: float = option(1.0, help="Nucleus sampling threshold (1 = off).", check=fraction)
    top_k: int = option(-1, help="Top-k filter (-1 = off).", check=at_least(-1))
    min_p: float = option(0.0, help="Min-p filter (0 = off).", check=unit_interval)
    stop: list[str] = option(factory=list, help="Extra stop strings (environments may add their own).")
    ignore_eos: bool = option(
        False,
        help="Training rollouts do not stop at the tokenizer's EOS or the chat template's end-of-turn token: "
        "every model turn runs to max_new_tokens (or max_total_tokens, or a stop string). For benchmarks "
        "with fixed lengths on random models (vLLM's and SGLang's ignore_eos); evaluation always stops "
        "at EOS.",
    )
    env_timeout_s: float = option(
        60.0, help="Seconds an environment's init/step may take before the trajectory fails.", check=positive
    )
    max_concurrent: int = option(256, help="Trajectories in flight at once.", check=positive)
    zero_reward_on_non_stop: bool = option(
        False,
        help="Set a trajectory's rewards to 0 unless its finish reason is 'stop' (cut at the token limit, at "
        "max_turns, or aborted): an unfinished answer earns no format credit. Training and eval "
        "(SkyRL's generator.zero_reward_on_non_stop).",
    )
    drift_check: bool = option(
        True,
        help="Compare each multi-turn token sequence with the chat template applied to the final "
        "conversation and report the mismatch rate as rollout/retokenize_drift.",
    )


@attrs.define(kw_only=True)
class KLConfig:
    """``[algorithm.kl]``: KL regularisation towards the reference (initial) policy."""

    mode: Literal["none", "loss", "reward"] = option(
        "none", help="'loss' adds coef·KL to the loss; 'reward' subtracts coef·KL from token rewards."
    )
    estimator: Literal["k1", "k2", "k3", "abs"] = option(
        "k3", help="KL estimator (Schulman's k1/k2/k3 or |log-ratio|); k3 is low-variance and non-negative."
    )
    coef: float = option(0.001, help="KL coefficient (initial value when adaptive).", check=non_negative)
    adaptive: bool = option(False, help="Adapt the coefficient towards `target` (reward mode; Ziegler et al. 2019).")
    target: float = option(0.1, help="Target KL for the adaptive controller.", check=positive)
    horizon: int = option(10000, help="Horizon of the adaptive controller.", check=positive)
    reduction: TermReduction = option(
        "inherit",
        help="How the KL loss term (mode = 'loss') is reduced: 'inherit' ([algorithm] loss_reduction) or any "
        "loss reduction. SkyRL-train always takes a per-sequence mean: 'sequence_mean' (with [algorithm] "
        "empty_sequences = 'count').",
    )
    update_ref_every_epoch: bool = option(
        False,
        help="Copy the policy into the reference model after every epoch of prompts (every "
        "len(train data) // prompts_per_step steps), not after the last step (SkyRL's "
        "trainer.update_ref_every_epoch).",
    )


@attrs.define(kw_only=True)
class TISConfig:
    """``[algorithm.tis]``: truncated importance sampling for engine/trainer mismatch."""

    mode: Literal["off", "token", "sequence"] = option(
        "off", help="Weight the token loss by min(exp(old − rollout log-prob), cap), per token or per sequence."
    )
    cap: float = option(
        2.0,
        help="Upper bound of the importance weight (SkyRL: token_tis_ratio_clip_high = 2.0 for 'token', "
        "sequence_tis_ratio_clip_high = 5.0 for 'sequence').",
        check=positive,
    )
    token_mask_low: float | None = option(
        None, help="Drop (zero the loss of) tokens whose ratio exp(old − rollout) is below this; set with "
        "token_mask_high.", check=positive,
    )
    token_mask_high: float | None = option(
        None, help="Drop tokens whose ratio exp(old − rollout) is above this; set with token_mask_low.",
        check=positive,
    )
    outlier_token_low: float | None = option(
        None, help="Drop whole sequences with any token whose ratio is below this (e.g. 1e-4).", check=positive
    )
    outlier_token_high: float | None = option(
        None, help="Drop whole sequences with any token whose ratio is above this (e.g. 100).", check=positive
    )
    sequence_mask: Literal["off", "geometric", "product"] = option(
        "off",
        help="Drop whole sequences whose ratio to the engine, the geometric mean or the product of the token "
        "ratios, lies outside [geometric_low, geometric_high] or [product_low, product_high].",
    )
    geometric_low: float = option(0.99, help="Lower bound of sequence_mask = 'geometric'.", check=positive)
    geometric_high: float = option(1.01, help="Upper bound of sequence_mask = 'geometric'.", check=positive)
    product_low: float = option(0.5, help="Lower bound of sequence_mask = 'product'.", check=positive)
    product_high: float = option(2.0, help="Upper bound of sequence_mask = 'product'.", check=positive)

    @property
    def enabled(self) -> bool:
        """Whether any correction (TIS or a mask) is on."""
        return (
            self.mode != "off"
            or self.sequence_mask != "off"
            or self.outlier_token_low is not None
            or self.outlier_token_high is not None
            or (self.token_mask_low is not None and self.token_mask_high is not None)
        )


def _default_ref(kind: Kind) -> Any:
    """A factory for the ``ComponentRef`` of a named slot's default (``skyrl_core.config.slots``)."""
    return lambda: ComponentRef(name=default_name(kind))


@attrs.define(kw_only=True)
class AlgorithmConfig:
    """``[algorithm]``: advantage estimator, policy loss and regularisers."""

    advantage: ComponentRef = option(
        factory=_default_ref(Kind.ADVANTAGE_ESTIMATOR), help="[algorithm.advantage] name + options."
    )
    policy_loss: ComponentRef = option(
        factory=_default_ref(Kind.POLICY_LOSS), help="[algorithm.policy_loss] name + options."
    )
    loss_reduction: LossReductionName = option(
        "token_mean",
        help="How per-token losses become one number: mean over all tokens of the mini-batch "
        "(DAPO), mean of per-sequence means, per-sequence sums divided by a constant (Dr. GRPO), mean of "
        "per-prompt token means (prompt_mean), or classic SkyRL-train's per-micro-batch token mean averaged "
        "over micro-batches of legacy_micro_batch_sequences sequences (token_mean_legacy).",
    )
    empty_sequences: Literal["drop", "count"] = option(
        "drop",
        help="A sequence without loss tokens (e.g. masked by a filter): 'drop' leaves it out of the number of "
        "sequences (prompts, micro-batches) a reduction divides by; 'count' keeps it there, contributing 0 "
        "(SkyRL-train's convention).",
    )
    legacy_micro_batch_sequences: int = option(
        1,
        help="token_mean_legacy: sequences per micro-batch of the reduction, taken consecutively in the "
        "mini-batch's order (SkyRL's trainer.micro_train_batch_size_per_gpu).",
        check=positive,
    )
    loss_norm_tokens: int | None = option(
        None,
        help="The constant of seq_mean_token_sum_norm; defaults to "
        "data.max_prompt_tokens + generator.max_total_tokens.",
        check=positive,
    )
    kl: KLConfig = option(factory=KLConfig, help="[algorithm.kl]")
    entropy_coef: float = option(
        0.0, help="Entropy bonus coefficient (0 = off; entropy is always logged).", check=non_negative
    )
    entropy_reduction: TermReduction = option(
        "inherit",
        help="How the entropy bonus is reduced: 'inherit' (loss_reduction) or any loss reduction (SkyRL-train: "
        "a token mean per micro-batch, 'token_mean_legacy').",
    )
    use_rollout_logprobs: bool = option(
        False, help="Use the engine's log-probs as the old policy instead of recomputing them (saves a forward pass)."
    )
    tis: TISConfig = option(factory=TISConfig, help="[algorithm.tis]")
    value_clip: float = option(0.2, help="Clip range of the critic's value loss (gae only).", check=positive)
    value_coef: float = option(0.5, help="Weight of the critic's value loss.", check=non_negative)
    value_reduction: TermReduction = option(
        "inherit",
        help="How the critic's value loss is reduced: 'inherit' (loss_reduction) or any loss reduction "
        "(SkyRL-train: a per-sequence mean, 'sequence_mean' with empty_sequences = 'count').",
    )
    zero_variance_filter: Literal["off", "mask", "drop"] = option(
        "off",
        help="Prompt groups whose samples all have the same reward (within zero_variance_tol) carry no "
        "group-relative signal: 'mask' zeroes their loss mask (SkyRL's zero_variance_filter), 'drop' removes "
        "them from the step before any forward pass (fewer mini-batches when groups go). Groups of one, and "
        "samples already without loss tokens, are left alone.",
    )
    zero_variance_tol: float = option(
        1e-6, help="Rewards within this of each other count as equal for zero_variance_filter.", check=non_negative
    )

    def reduction(self, term: Literal["policy", "kl", "entropy", "value"]) -> str:
        """The reduction of one loss term, with 'inherit' resolved to ``loss_reduction``."""
        chosen = {"policy": self.loss_reduction, "kl": self.kl.reduction, "entropy": self.entropy_reduction,
                  "value": self.value_reduction}[term]
        return self.loss_reduction if chosen == "inherit" else chosen


def _check_betas(value: list[float]) -> str | None:
    if len(value) == 2 and all(0 <= b < 1 for b in value):
        return None
    return f"expected two numbers in [0, 1), got {value!r}"


@attrs.define(kw_only=True)
class TrainerConfig:
    """``[trainer]``: batch sizes (in their units), optimisation and schedule."""

    steps: int = option(10, help="Training steps (one step = one generation round + its updates).", check=positive)
    prompts_per_step: int = option(8, help="Prompts drawn from the dataset per step.", check=positive)
    samples_per_prompt: int = option(4, help="Samples generated per prompt (the group size).", check=positive)
    prompts_per_minibatch: int | None = option(
        None, help="Prompts per optimizer step; must divide prompts_per_step (default: all of them).", check=positive
    )
    epochs_per_step: int = option(1, help="Passes over the step's mini-batches (PPO epochs).", check=positive)
    old_logprobs_from_update: bool = option(
        True,
        help="When a step's update is exactly on-policy (one mini-batch, one epoch, and neither "
        "[algorithm.kl] mode = 'reward' nor use_rollout_logprobs), take the old log-probs from the update's own "
        "forward pass, detached, instead of a separate forward pass: the same loss and gradients, one pass fewer "
        "(metric policy/old_logprobs_from_update). false: always run the separate pass.",
    )
    micro_batch_tokens: int = option(
        8192, help="Token budget of one forward/backward micro-batch (gradient accumulation beyond it).", check=positive
    )
    lr: float = option(1e-6, help="Peak learning rate (AdamW).", check=positive)
    weight_decay: float = option(0.01, help="AdamW weight decay.", check=non_negative)
    betas: list[float] = option(factory=lambda: [0.9, 0.999], help="AdamW betas.", check=_check_betas)
    grad_clip: float = option(1.0, help="Max gradient norm (0 = no clipping).", check=non_negative)
    lr_schedule: Literal["constant", "cosine", "linear"] = option(
        "constant", help="Learning-rate schedule after warmup."
    )
    warmup_steps: int = option(0, help="Linear warmup in optimizer steps.", check=non_negative)
    gradient_checkpointing: Literal["auto", True, False] = option(
        "auto",
        help="Recompute activations in the backward pass to save memory (about a third more compute). "
        "'auto': on only when a micro_batch_tokens micro-batch would not fit in the GPU's free memory "
        "(estimated at start-up; off on CPU).",
    )
    skip_nan: bool = option(True, help="Skip (and report) an optimizer step whose loss or gradient is not finite.")
    mismatch_warn_threshold: float = option(
        0.05,
        help="At start-up, warn when the backend's log-probs differ from the trainer's by more than this "
        "(mean absolute difference per token).",
        check=positive,
    )
    mode: Literal["sync", "one_step_off", "async"] = option(
        "sync",
        help="'sync': generate, then train, then sync weights. 'one_step_off': the next step's rollouts are "
        "generated (with the weights the current step starts from) while the current step trains; every "
        "sample is one policy version old. 'async': generation runs continuously in the background and "
        "each step takes groups at most `max_staleness` versions old. Off-policy modes turn "
        "[algorithm.tis] on unless it is set (see docs/async.md).",
    )
    max_staleness: int = option(
        1,
        help="mode = 'async': how many policy versions a trained sample may lag behind the weights being "
        "trained (0 = only fresh samples). Generation is throttled to keep within it; a sample that "
        "still ends up older is regenerated, never trained.",
        check=non_negative,
    )
    in_flight: Literal["finish", "abort"] = option(
        "finish",
        help="mode = 'async', at a weight sync: 'finish' lets running model calls end on the old weights "
        "(the sync waits for them); 'abort' stops them, syncs at once and continues them on the new "
        "weights (the backend must support abort_requests()).",
    )


@attrs.define(kw_only=True)
class SFTConfig:
    """``[warm_start]``: a short supervised phase before RL (also ``skyrl sft``)."""

    data: list[str] = option(factory=list, help="Files with `prompt` + `response` (or `messages`) rows.")
    steps: int = option(100, help="Optimizer steps.", check=positive)
    batch_size: int = option(16, help="Sequences per optimizer step.", check=positive)
    lr: float = option(1e-3, help="Learning rate.", check=positive)
    generate: str | None = option(
        None, help="Create `data` with this dataset preparer's SFT split when missing (e.g. 'arithmetic')."
    )


@attrs.define(kw_only=True)
class EvalConfig:
    """``[eval]``: periodic evaluation on ``data.eval``."""

    every: int = option(0, help="Evaluate every N steps (0 = only before and after training).", check=non_negative)
    before_train: bool = option(True, help="Evaluate once before the first step.")
    samples_per_prompt: int = option(1, help="Samples per eval prompt (pass@k needs k or more).", check=positive)
    temperature: float = option(0.0, help="Eval sampling temperature (0 = greedy).", check=non_negative)
    top_p: float = option(1.0, help="Eval nucleus threshold.", check=fraction)
    max_new_tokens: int | None = option(
        None, help="Per-turn limit for eval (default: generator.max_new_tokens).", check=positive
    )
    pass_k: list[int] = option(
        factory=lambda: [1], help="k values reported as eval/<source>/pass@k.", check=all_positive
    )
    max_rows: int | None = option(None, help="Evaluate at most this many rows.", check=positive)
    output: str | None = option(
        None, help="Where `skyrl eval` writes per-sample JSONL and the summary (default: <run dir>/eval)."
    )


@attrs.define(kw_only=True)
class CheckpointConfig:
    """``[checkpoint]``: saving, retention, resume and export."""

    every: int = option(0, help="Save every N steps (0 = only at the end).", check=non_negative)
    keep_last: int = option(2, help="Checkpoints kept (older ones are deleted).", check=positive)
    resume: str = option(
        "auto", help="'auto' (latest checkpoint in the run directory, if any), 'never', or a checkpoint path."
    )
    export_at_end: bool = option(True, help="Write a Hugging Face model folder to <run dir>/export at the end.")


@attrs.define(kw_only=True)
class TrackingConfig:
    """``[tracking]``: where metrics go. Options of a tracker go in ``[tracking.<name>]``."""

    trackers: list[str] = option(
        factory=lambda: ["console", "jsonl", "tensorboard"], help="Trackers to log to (see `skyrl components tracker`)."
    )
    plot: bool = option(True, help="Save reward and eval curves as <run dir>/curves.png at the end.")
    options: dict[str, Any] = option(factory=dict, help="Validated [tracking.<name>] tables, by tracker name.")


@attrs.define(kw_only=True)
class RuntimeConfig:
    """``[runtime]``: where the pieces run."""

    mode: Literal["local", "ray"] = option(
        "local", help="'local': one process; 'ray': workers and engines as Ray actors."
    )
    address: str | None = option(None, help="Ray address ('auto' for an existing cluster); None starts a local one.")
    colocate: bool = option(True, help="Engines and trainers share GPUs (sleep/offload between phases).")
    train_gpus: int = option(1, help="GPUs (or CPU workers) for training.", check=positive)
    inference_gpus: int = option(1, help="GPUs for inference engines when not colocated.", check=non_negative)
    weight_sync: Literal["auto", "object_store", "broadcast", "cuda_ipc", "disk"] = option(
        "auto",
        help="How new weights reach the engines. Through the driver ('object_store'; in_process with "
        "mode = 'local'), which every strategy and backend support, or directly from the strategy's ranks "
        "when the strategy is a ShardedWeightSource and the backend an EngineGroup (fsdp2 with engines in "
        "Ray actors): 'broadcast' (a torch.distributed group: NCCL on GPUs, gloo on CPU), 'cuda_ipc' "
        "(colocated on one GPU), 'disk' (safetensors files on a filesystem both sides see). 'auto' picks "
        "cuda_ipc when colocated on GPUs, else broadcast when both sides offer it, else the driver path "
        "(always the driver path with mode = 'local'); a direct transport named here must be offered by both.",
    )
    weight_sync_bucket_mb: int = option(
        256, help="Weights are gathered and sent in buckets of about this many MiB.", check=positive
    )
    verify_weights: bool = option(
        False,
        help="After every weight sync, check that each engine holds exactly the trainer's weights "
        "(per-tensor checksums; slow, for debugging and tests).",
    )


@attrs.define(kw_only=True)
class RunConfig:
    """The whole run: one TOML file."""

    run: RunSection = option(factory=RunSection, help="[run]")
    model: ModelConfig = option(help="[model] (required)")
    data: DataConfig = option(factory=DataConfig, help="[data]")
    generator: GeneratorConfig = option(factory=GeneratorConfig, help="[generator]")
    backend: ComponentRef = option(factory=_default_ref(Kind.BACKEND), help="[backend] name + options.")
    strategy: ComponentRef = option(factory=_default_ref(Kind.STRATEGY), help="[strategy] name + options.")
    algorithm: AlgorithmConfig = option(factory=AlgorithmConfig, help="[algorithm]")
    trainer: TrainerConfig = option(factory=TrainerConfig, help="[trainer]")
    warm_start: SFTConfig | None = option(None, help="[warm_start] (optional supervised phase before RL)")
    eval: EvalConfig = option(factory=EvalConfig, help="[eval]")
    checkpoint: CheckpointConfig = option(factory=CheckpointConfig, help="[checkpoint]")
    tracking: TrackingConfig = option(factory=TrackingConfig, help="[tracking]")
    runtime: RuntimeConfig = option(factory=RuntimeConfig, help="[runtime]")
    environments: dict[str, Any] = option(
        factory=dict, help="[environments.<name>] tables, validated by each environment's config class."
    )
    sections: dict[str, Any] = option(
        factory=dict, help="Plugin-owned top-level tables (e.g. [dapo]), validated by their config classes."
    )

    @property
    def run_dir(self) -> str:
        """The run directory with ``{name}`` substituted."""
        return self.run.dir.replace("{name}", self.run.name)

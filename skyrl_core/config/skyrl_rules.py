"""The rules of the SkyRL translation table (``skyrl_core.config.skyrl_keys``).

Four kinds (``Same``, ``Rule``, ``Ignored``, ``NeutralOnly``; see ``skyrl_keys``) and the functions
of the ``Rule`` entries. A rule reads the translation through ``Translation``
(``skyrl_core.config.skyrl_import``): ``get`` (another SkyRL key's effective value), ``set`` (one of
our keys), ``differ`` (a printed semantic difference), ``ignore``, ``fail`` (the key cannot be
placed). Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from skyrl_core.config.skyrl_import import Translation

# -- rule kinds --------------------------------------------------------------------------------


@attrs.frozen
class Same:
    """The value becomes our ``key`` (``convert`` reshapes it: ``"all-linear"`` -> ``["all-linear"]``);
    ``when`` (of the translation) says whether the key matters in this config at all."""

    key: str
    convert: Callable[[Any], Any] | None = None
    when: Callable[[Translation], bool] | None = None
    note: str = ""

    def apply(self, t: Translation, value: Any) -> None:
        if self.when is not None and not self.when(t):
            t.unused()
            return
        t.set(self.key, self.convert(value) if self.convert else value)
        if self.note:
            t.differ(self.note)


@attrs.frozen
class Rule:
    """A translation that needs the rest of the config; ``ours`` lists the keys it may set."""

    fn: Callable[[Translation, Any], None]
    ours: tuple[str, ...]
    note: str

    def apply(self, t: Translation, value: Any) -> None:
        self.fn(t, value)


@attrs.frozen
class Ignored:
    """No effect on what is trained here; ``reason`` says why (printed as "ignored: reason")."""

    reason: str

    def apply(self, t: Translation, value: Any) -> None:
        t.ignore(self.reason)


@attrs.frozen
class NeutralOnly:
    """Only the values in ``neutral`` can be reproduced; another one fails with ``advice``."""

    neutral: tuple[Any, ...]
    advice: str

    def apply(self, t: Translation, value: Any) -> None:
        if value in self.neutral and type(value) in {type(n) for n in self.neutral}:
            t.unused()
        else:
            t.fail(self.advice)


RuleKind = Same | Rule | Ignored | NeutralOnly
def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


# -- conversions and conditions ----------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """SkyRL accepts a string or a list where we take a list (``"all-linear"``, one data file)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _lora_on(t: Translation) -> bool:
    return bool(t.get("trainer.policy.model.lora.rank"))


def _critic_on(t: Translation) -> bool:
    return t.estimator() == "gae"


def _kl_reward(t: Translation) -> bool:
    return t.get("trainer.algorithm.use_kl_in_reward") is True


def _kl_on(t: Translation) -> bool:
    return bool(t.get("trainer.algorithm.use_kl_in_reward") or t.get("trainer.algorithm.use_kl_loss"))


# -- rules ---------------------------------------------------------------------------------------

ENV_ADAPTER = "skyrl-env-skyrlgym"
BACKENDS = {"vllm": "vllm", "sglang": "sglang"}
#: SkyRL's generic engine keys -> the option of each of our backends that does the same.
ENGINE_OPTIONS: dict[str, dict[str, str]] = {
    "generator.inference_engine_tensor_parallel_size": {"vllm": "tensor_parallel_size", "sglang": "tp_size"},
    "generator.gpu_memory_utilization": {"vllm": "gpu_memory_utilization", "sglang": "mem_fraction_static"},
    "generator.max_num_seqs": {"vllm": "max_num_seqs", "sglang": "max_running_requests"},
    "generator.enable_prefix_caching": {"vllm": "enable_prefix_caching", "sglang": "radix_cache"},
    "generator.enforce_eager": {"vllm": "enforce_eager"},
    "generator.model_dtype": {"vllm": "dtype", "sglang": "dtype", "native": "dtype"},
    "generator.engine_init_kwargs": {"vllm": "engine_kwargs", "sglang": "server_args"},
}
POLICY_LOSSES = {
    "regular": "ppo_clip", "dual_clip": "dual_clip", "gspo": "gspo", "clip_cov": "clip_cov", "kl_cov": "kl_cov",
    "cispo": "cispo", "sapo": "sapo", "cross_entropy": "cross_entropy", "importance_sampling": "importance_sampling",
    "rollout_is": "rollout_is",
}
#: losses whose eps_low / eps_high are SkyRL's eps_clip_low / eps_clip_high
EPS_CLIP_LOSSES = ("ppo_clip", "dual_clip", "clip_cov", "gspo", "rollout_is")
SCHEDULERS = {"constant_with_warmup": "constant", "constant": "constant", "cosine": "cosine",
              "cosine_with_warmup": "cosine", "linear": "linear"}


def _engine_option(t: Translation, value: Any) -> None:
    """A SkyRL engine knob: the chosen backend's own option when it has one, else ignored."""
    backend = t.backend()
    option = ENGINE_OPTIONS[t.current].get(backend)
    if t.current == "generator.engine_init_kwargs":
        if not value:
            return t.unused()
        if option is None:
            return t.fail(f"engine arguments of vLLM/SGLang cannot be passed to the {backend!r} backend; "
                          "translate with --backend vllm or sglang, or drop them")
        return t.set(f"backend.{option}", dict(value))
    if t.current == "generator.inference_engine_tensor_parallel_size" and option is None and value != 1:
        return t.fail(f"the {backend!r} backend has no tensor parallelism; use --backend vllm or sglang")
    if option is None:
        return t.ignore(f"engine tuning; the {backend!r} backend has no such option")
    if t.current == "generator.model_dtype" and value == t.policy_dtype():
        return t.unused()  # our backends default to the [model] dtype
    t.set(f"backend.{option}", value)


def _backend(t: Translation, value: Any) -> None:
    chosen = t.backend()
    if value not in BACKENDS:
        return t.fail(f"unknown SkyRL backend {value!r}; SkyRL's are vllm and sglang")
    t.set("backend.name", chosen)
    if chosen != BACKENDS[value]:
        t.differ(f"--backend {chosen} replaces SkyRL's {value} engine (sampling is the same; speed and memory differ)")


def _placement(t: Translation, value: Any) -> None:
    """colocate_all, policy nodes x GPUs, engines: runtime mode, GPUs and strategy in one place."""
    if t.current != "trainer.placement.colocate_all":  # the others are read from here
        return t.consumed_by("trainer.placement.colocate_all")
    gpus = t.get("trainer.placement.policy_num_nodes") * t.get("trainer.placement.policy_num_gpus_per_node")
    engines = t.get("generator.num_inference_engines")
    tp = t.get("generator.inference_engine_tensor_parallel_size")
    colocate = bool(value)
    t.set("runtime.colocate", colocate)
    if gpus == 1 and colocate:
        t.set("runtime.mode", "local")
        t.set("strategy.name", "local")
        return
    t.set("runtime.mode", "ray")
    t.set("runtime.train_gpus", gpus)
    t.set("strategy.name", "fsdp2")
    if colocate:
        t.set("runtime.inference_gpus", 0)
        if engines * tp != gpus:
            t.differ(f"colocated engines: one per {tp} training GPU(s) here ({gpus // max(tp, 1)} engines), "
                     f"SkyRL's generator.num_inference_engines = {engines}")
    else:
        t.set("runtime.inference_gpus", engines * tp)


def _strategy(t: Translation, value: Any) -> None:
    if value in ("fsdp", "fsdp2", "deepspeed"):
        if value != "fsdp2":
            t.differ(f"SkyRL's {value} strategy becomes ours (fsdp2 over several GPUs, local on one): "
                     "the same updates, different memory use")
        return t.consumed_by("trainer.placement.colocate_all")
    t.fail(f"strategy {value!r} is not available here (Megatron is a later plugin); "
           "use trainer.strategy=fsdp2")


def _reshard(t: Translation, value: Any) -> None:
    if t.strategy() != "fsdp2":
        return t.unused()
    if isinstance(value, bool):
        return t.set("strategy.reshard_after_forward", value)
    t.ignore("partial resharding (an integer) is FSDP1's; fsdp2 here reshards fully (true) or not (false)")


def _scheduler(t: Translation, value: Any) -> None:
    if value not in SCHEDULERS:
        return t.fail(f"scheduler {value!r} has no counterpart; ours: {', '.join(sorted(SCHEDULERS))}")
    t.set("trainer.lr_schedule", SCHEDULERS[value])
    if value == "constant" and t.get("trainer.policy.optimizer_config.num_warmup_steps"):
        t.set("trainer.warmup_steps", 0)
        t.differ("transformers' 'constant' schedule skips warmup: warmup_steps = 0")


def _ref_path(t: Translation, value: Any) -> None:
    if value in (None, t.get("trainer.policy.model.path")):
        return t.unused()
    t.set("model.ref_path", value)


def _critic_path(t: Translation, value: Any) -> None:
    if value is None:
        return t.unused()
    t.set("model.critic_path", value)


def _critic_lr(t: Translation, value: Any) -> None:
    if not _critic_on(t):
        return t.unused()
    t.set("strategy.critic_lr", value)
    if value != t.get("trainer.policy.optimizer_config.lr"):
        t.differ("the critic's learning rate is its own here too; its other optimizer settings are the policy's")


def _critic_same(policy_key: str) -> Callable[[Translation, Any], None]:
    def rule(t: Translation, value: Any) -> None:
        if not _critic_on(t) or value == t.get(policy_key):
            return t.unused()
        t.fail(f"the critic shares the policy's {policy_key.rsplit('.', 1)[1]} here "
               f"({t.get(policy_key)!r}); set both to the same value")

    return rule


def _estimator(t: Translation, value: Any) -> None:
    if value not in t.available("advantage_estimator"):
        return t.fail(f"advantage estimator {value!r} is not available here; ours: "
                      f"{', '.join(sorted(t.available('advantage_estimator')))}")
    t.set("algorithm.advantage.name", value)
    if t.convention() != "skyrl-train":
        return
    if value in ("gae", "reinforce++", "reinforce++_baseline"):
        t.set("algorithm.advantage.whiten_variance", "bessel")
        t.differ("whitening: SkyRL-train divides by the Bessel-corrected variance (n - 1), ours by default by "
                 "the population variance (n): whiten_variance = 'bessel'")
    if value == "grpo":
        t.set("algorithm.advantage.singleton_advantage", "score")
        t.differ("GRPO, a group of one sample: SkyRL-train's advantage is its score / (1 + epsilon), ours by "
                 "default 0: singleton_advantage = 'score'")
    if value == "gae":
        t.set("algorithm.value_reduction", "sequence_mean")
        t.differ("the critic's value loss: SkyRL-train takes a per-sequence mean: value_reduction = "
                 "'sequence_mean'")


def _kl_mode(t: Translation, value: Any) -> None:
    if t.current != "trainer.algorithm.use_kl_loss":
        return t.consumed_by("trainer.algorithm.use_kl_loss")
    in_reward = t.get("trainer.algorithm.use_kl_in_reward")
    if value and in_reward:
        return t.fail("use_kl_loss and use_kl_in_reward are both true; skyrl applies KL one way "
                      "([algorithm.kl] mode = 'loss' or 'reward'): set one of them to false")
    if value:
        t.set("algorithm.kl.mode", "loss")
        t.set("algorithm.kl.reduction", "sequence_mean")
        t.set("algorithm.empty_sequences", "count")
        t.differ("KL loss: on by default in SkyRL, off here, so it is set explicitly; SkyRL reduces it "
                 "per sequence (reduction = 'sequence_mean'), whatever loss_reduction says")
    elif in_reward:
        t.set("algorithm.kl.mode", "reward")
    else:
        t.set("algorithm.kl.mode", "none")


def _kl_ctrl_type(t: Translation, value: Any) -> None:
    if not _kl_reward(t):
        return t.unused()
    if value not in ("fixed", "adaptive"):
        return t.fail(f"kl_ctrl.type {value!r}: SkyRL's are 'fixed' and 'adaptive'")
    t.set("algorithm.kl.adaptive", value == "adaptive")


def _entropy(t: Translation, value: Any) -> None:
    if t.current != "trainer.algorithm.use_entropy_loss":
        return t.consumed_by("trainer.algorithm.use_entropy_loss")
    if not value:
        return t.unused()
    t.set("algorithm.entropy_coef", t.get("trainer.algorithm.entropy_loss_coef"))
    if t.convention() == "skyrl-train":
        t.set("algorithm.entropy_reduction", "token_mean_legacy")
        t.set("algorithm.legacy_micro_batch_sequences", t.get("trainer.micro_train_batch_size_per_gpu"))
        t.differ("entropy bonus: SkyRL-train takes a token mean per micro-batch: entropy_reduction = "
                 "'token_mean_legacy'")


def _component_option(option: str, losses: Iterable[str] = (), estimators: Iterable[str] = (),
                      convert: Callable[[Any], Any] | None = None) -> Callable[[Translation, Any], None]:
    """A SkyRL algorithm key that is an option of some policy losses or estimators here."""
    losses, estimators = tuple(losses), tuple(estimators)

    def rule(t: Translation, value: Any) -> None:
        if losses and t.policy_loss() in losses:
            return t.set(f"algorithm.policy_loss.{option}", convert(value) if convert else value)
        if estimators and t.estimator() in estimators:
            return t.set(f"algorithm.advantage.{option}", convert(value) if convert else value)
        t.unused()

    return rule


def _batch_normalize(t: Translation, value: Any) -> None:
    if not value:
        return t.unused()
    if t.estimator() not in ("grpo", "rloo"):
        return t.fail(f"advantage_batch_normalize has no counterpart for {t.estimator()!r} here "
                      "(only grpo and rloo take batch_normalize)")
    t.set("algorithm.advantage.batch_normalize", True)
    t.differ("batch whitening: SkyRL's mean includes padding positions; ours is over the loss tokens")


def _policy_loss(t: Translation, value: Any) -> None:
    if value not in POLICY_LOSSES:
        return t.fail(f"policy loss {value!r} is not available here; SkyRL names with a counterpart: "
                      f"{', '.join(POLICY_LOSSES)}")
    t.set("algorithm.policy_loss.name", POLICY_LOSSES[value])
    if value in ("cross_entropy", "importance_sampling"):
        t.differ(f"{value}: reduced by loss_reduction here; SkyRL sums it over the tokens")


def _loss_reduction(t: Translation, value: Any) -> None:
    micro = t.get("trainer.micro_train_batch_size_per_gpu")
    t.set("algorithm.empty_sequences", "count")
    if (value == "token_mean" and t.convention() == "skyrl-train") or value == "token_mean_legacy":
        if value == "token_mean_legacy" and t.convention() == "skyrl-train":
            return t.fail("token_mean_legacy is NovaSky SkyRL's name; translate with --convention skyrl")
        t.set("algorithm.loss_reduction", "token_mean_legacy")
        t.set("algorithm.legacy_micro_batch_sequences", micro)
        t.differ(f"{value!r}: SkyRL-train takes a token mean per micro-batch of {micro} sequence(s) and averages "
                 "those; ours 'token_mean' is one mean over the mini-batch, so 'token_mean_legacy' with "
                 "legacy_micro_batch_sequences = micro_train_batch_size_per_gpu reproduces it")
    elif value in ("token_mean", "sequence_mean", "prompt_mean", "seq_mean_token_sum_norm"):
        if value == "prompt_mean" and t.convention() == "skyrl-train":
            return t.fail("prompt_mean is NovaSky SkyRL's; translate with --convention skyrl")
        t.set("algorithm.loss_reduction", value)
        if value == "seq_mean_token_sum_norm":
            t.set("algorithm.loss_norm_tokens", t.get("trainer.algorithm.max_seq_len") or t.max_sequence_tokens())
    else:
        return t.fail(f"loss_reduction {value!r} is not one of SkyRL's (token_mean, sequence_mean, "
                      "seq_mean_token_sum_norm)")
    t.differ("empty_sequences = 'count': SkyRL counts a sequence without loss tokens in its means (as 0)")


def _max_seq_len(t: Translation, value: Any) -> None:
    t.consumed_by("trainer.algorithm.loss_reduction") if value is not None else t.unused()


def _zero_variance(t: Translation, value: Any) -> None:
    if not value:
        return t.unused()
    t.set("algorithm.zero_variance_filter", "mask")
    if t.convention() == "skyrl-train":
        t.set("algorithm.zero_variance_tol", 0.0)
        t.differ("zero_variance_filter: SkyRL-train compares rewards exactly: zero_variance_tol = 0.0")


def _tis(t: Translation, value: Any) -> None:
    """use_tis/tis_imp_ratio_cap and off_policy_correction.*: [algorithm.tis], read once."""
    if t.current != "trainer.algorithm.off_policy_correction.tis_ratio_type":
        return t.consumed_by("trainer.algorithm.off_policy_correction.tis_ratio_type")
    p = "trainer.algorithm.off_policy_correction."
    mode, cap = value, None
    if mode == "token":
        cap = t.get(p + "token_tis_ratio_clip_high")
    elif mode == "sequence":
        cap = t.get(p + "sequence_tis_ratio_clip_high")
    elif mode is not None:
        return t.fail(f"tis_ratio_type {mode!r}: SkyRL's are null, 'token' and 'sequence'")
    if mode is None and t.get("trainer.algorithm.use_tis"):
        mode, cap = "token", t.get("trainer.algorithm.tis_imp_ratio_cap")
    if mode is not None:
        t.set("algorithm.tis.mode", mode)
        t.set("algorithm.tis.cap", cap)
    metric = t.get(p + "sequence_mask_metric")
    if metric == "geometric":
        t.set("algorithm.tis.sequence_mask", "geometric")
        t.set("algorithm.tis.geometric_low", t.get(p + "geo_mask_low"))
        t.set("algorithm.tis.geometric_high", t.get(p + "geo_mask_high"))
    elif metric == "product":
        t.set("algorithm.tis.sequence_mask", "product")
        t.set("algorithm.tis.product_low", t.get(p + "product_mask_low"))
        t.set("algorithm.tis.product_high", t.get(p + "product_mask_high"))
    elif metric is not None:
        return t.fail(f"sequence_mask_metric {metric!r}: SkyRL's are null, 'geometric' and 'product'")
    for ours, theirs in (("outlier_token_low", "outlier_token_is_threshold_low"),
                         ("outlier_token_high", "outlier_token_is_threshold_high"),
                         ("token_mask_low", "token_mask_is_threshold_low"),
                         ("token_mask_high", "token_mask_is_threshold_high")):
        if t.get(p + theirs) is not None:
            t.set(f"algorithm.tis.{ours}", t.get(p + theirs))
    if not t.settings_made():
        t.unused()


def _dapo(t: Translation, value: Any) -> None:
    """dynamic_sampling, apply_overlong_filtering and +overlong_buffer: the [dapo] section, read once."""
    if t.current != "trainer.algorithm.dynamic_sampling.type":
        return t.consumed_by("trainer.algorithm.dynamic_sampling.type")
    sampling = value
    filtering = t.get("generator.apply_overlong_filtering")
    buffer = t.get("trainer.algorithm.overlong_buffer.len")
    if sampling is None and not filtering and buffer is None:
        return t.unused()
    if not t.has_section("dapo"):
        return t.fail("dynamic sampling and overlong shaping come from the skyrl-algo-dapo plugin: "
                      "`pip install skyrl-algo-dapo`, then translate again")
    if sampling not in (None, "filter"):
        return t.fail(f"dynamic_sampling.type {sampling!r} has no counterpart: only 'filter' (draw new prompts "
                      "until enough groups have distinct rewards) is available, as [dapo] dynamic_sampling")
    # every [dapo] piece is on by default: say each one explicitly
    t.set("dapo.clip_higher", False)
    t.set("dapo.token_level_loss", False)
    t.set("dapo.dynamic_sampling", sampling == "filter")
    if sampling == "filter":
        rounds = t.get("trainer.algorithm.dynamic_sampling.max_sample_batches")
        if rounds is None or rounds < 1:
            return t.fail("max_sample_batches <= 0 (sample forever) has no counterpart; give a number of rounds")
        t.set("dapo.max_sampling_rounds", rounds)
        t.set("dapo.filter_on", "reward")
    t.set("dapo.overlong_filtering", bool(filtering))
    t.set("dapo.overlong_punishment", buffer is not None)
    if buffer is not None:
        t.set("dapo.overlong_max_tokens", t.get("generator.sampling_params.max_generate_length"))
        t.set("dapo.overlong_buffer_tokens", buffer)
        factor = t.get("trainer.algorithm.overlong_buffer.penalty_factor")
        t.set("dapo.overlong_penalty_factor", 1.0 if factor is None else factor)
    t.differ("[dapo] turns every DAPO piece on by default; the translation sets each to what the SkyRL "
             "config asks (clip-higher and the loss reduction are set in [algorithm] directly)")


def _resume(t: Translation, value: Any) -> None:
    if t.current != "trainer.resume_mode":
        return t.consumed_by("trainer.resume_mode")
    if value in (None, "none", "null"):
        t.set("checkpoint.resume", "never")
    elif value == "latest":
        t.set("checkpoint.resume", "auto")
    elif value == "from_path":
        path = t.get("trainer.resume_path")
        if not path:
            return t.fail("resume_mode = from_path needs trainer.resume_path")
        t.set("checkpoint.resume", path)
    else:
        t.fail(f"resume_mode {value!r}: SkyRL's are null, 'latest' and 'from_path'")


def _keep(t: Translation, value: Any) -> None:
    if value is None or value < 1:
        t.differ("max_ckpts_to_keep = -1 (keep all) has no counterpart: ours keeps the last "
                 "[checkpoint] keep_last (2); raise it if you need more")
        return
    t.set("checkpoint.keep_last", value)


def _epochs(t: Translation, value: Any) -> None:
    if t.overridden("trainer.steps"):
        return t.ignore("trainer.steps is given with --set")
    rows = t.train_rows()
    per_step = t.get("trainer.train_batch_size")
    if rows is None:
        return t.fail("epochs become trainer.steps = epochs x (training rows // train_batch_size), but the "
                      "training data could not be read here to count its rows; pass --set trainer.steps=N")
    steps = value * (rows // per_step)
    if steps < 1:
        return t.fail(f"{rows} training rows make no full batch of train_batch_size = {per_step}; lower it")
    t.set("trainer.steps", steps)
    t.differ(f"epochs: trainer.steps = {value} x ({rows} rows // {per_step} prompts per step) = {steps} (SkyRL "
             "drops the last partial batch of an epoch; ours counts steps; rows dropped as too long are not "
             "subtracted)")


def _micro_batch(target: str) -> Callable[[Translation, Any], None]:
    def rule(t: Translation, value: Any) -> None:
        seq = t.max_sequence_tokens()
        t.set(target, value * seq)
        which = "training" if target.startswith("trainer") else "no-grad (log-prob)"
        t.differ(f"{which} micro-batches: SkyRL counts sequences per GPU, ours tokens per rank: "
                 f"{value} x {seq} (max input + max generate length) = {value * seq} tokens; this changes "
                 "memory, not the loss")

    return rule


def _forward_micro(t: Translation, value: Any) -> None:
    if not t.component_has("strategy", t.strategy(), "forward_micro_batch_tokens"):
        return t.unused()
    _micro_batch("strategy.forward_micro_batch_tokens")(t, value)


def _critic_mini(t: Translation, value: Any) -> None:
    if not _critic_on(t) or value == t.get("trainer.policy_mini_batch_size"):
        return t.unused()
    t.fail("the critic is updated on the policy's mini-batches here; set critic_mini_batch_size = "
           "policy_mini_batch_size")


def _mini_batch(t: Translation, value: Any) -> None:
    t.set("trainer.prompts_per_minibatch", value)
    t.differ("batch sizes: SkyRL's train_batch_size and policy_mini_batch_size count prompts, as "
             "prompts_per_step and prompts_per_minibatch do (sequences = prompts x samples_per_prompt)")


def _eval_every(t: Translation, value: Any) -> None:
    if value is None or value < 0:
        t.set("eval.every", 0)
        t.set("eval.before_train", False)
        t.differ("eval_interval = -1: no periodic evaluation; ours still evaluates once after training "
                 "when [data] eval is set")
        return
    t.set("eval.every", value)


def _trackers(t: Translation, value: Any) -> None:
    names = as_list(value)
    out = ["console", "jsonl"]
    for name in names:
        if name == "console":
            continue
        if name not in t.available("tracker"):
            return t.fail(f"logger {name!r} has no tracker here; installed: {', '.join(t.available('tracker'))}"
                          + (f" (`pip install skyrl-tracker-{name}`)" if name in ("wandb", "mlflow") else ""))
        out.append(name)
        if name in ("wandb", "mlflow") and t.component_has("tracker", name, "project"):
            t.set(f"tracking.{name}.project", t.get("trainer.project_name"))
    t.set("tracking.trackers", out)


def _project(t: Translation, value: Any) -> None:
    t.consumed_by("trainer.logger")


def _max_input(t: Translation, value: Any) -> None:
    t.set("generator.max_total_tokens", t.max_sequence_tokens())
    if t.get("generator.max_turns") > 1:
        t.differ("multi-turn length: SkyRL stops when the input reaches generator.max_input_length; ours when "
                 "prompt + every turn + observations reach max_total_tokens = max_input_length + "
                 "max_generate_length")


def _chat_template(t: Translation, value: Any) -> None:
    if t.current != "generator.chat_template.name_or_path":
        return t.consumed_by("generator.chat_template.name_or_path")
    if value is None:
        return t.unused()
    if t.get("generator.chat_template.source") != "file":
        return t.fail("SkyRL's named chat templates are not available here; point at the template file "
                      "(generator.chat_template.source=file)")
    t.set("model.chat_template", value)


def _conversation(t: Translation, value: Any) -> None:
    if value is True or t.get("generator.max_turns") == 1:
        return t.unused()
    t.fail("skyrl always writes a multi-turn episode as a conversation (each observation is a message of its "
           "own): set generator.use_conversation_multi_turn=true, or keep max_turns = 1")


def _append_eos(t: Translation, value: Any) -> None:
    if not value or t.get("generator.max_turns") == 1 or not t.get("generator.sampling_params.stop"):
        return t.unused()
    t.differ("a turn ended by a stop string: SkyRL appends the EOS token to it; skyrl keeps the tokens "
             "the model sampled and continues with the chat template's tokens for the next message")


def _eval_max_new(t: Translation, value: Any) -> None:
    if value == t.get("generator.sampling_params.max_generate_length"):
        return t.unused()
    t.set("eval.max_new_tokens", value)


def _eval_stop(t: Translation, value: Any) -> None:
    if as_list(value) == as_list(t.get("generator.sampling_params.stop")):
        return t.unused()
    t.fail("evaluation uses the training stop strings ([generator] stop) here; give both the same list")


def _env_class(t: Translation, value: Any) -> None:
    t.set_env(value)


def _skyrl_gym(t: Translation, value: Any) -> None:
    if not isinstance(value, Mapping):
        return t.fail("expected a table of environment ids")
    for env_id, options in value.items():
        if env_id == "max_env_workers":
            t.ignore("environment calls run in the generator's thread pool here (min(32, [generator] "
                     "max_concurrent) threads)")
            continue
        if not isinstance(options, Mapping):
            t.fail(f"environment.skyrl_gym.{env_id}: expected a table of that environment's options")
            continue
        t.set_env_config(env_id, dict(options))


def _same_value(ours: str) -> Rule:
    return Rule(lambda t, v: t.set(ours, v), (ours,), "the same")


def _no_op(t: Translation, value: Any) -> None:
    t.unused()


def _rule(fn: Callable[[Translation, Any], None], ours: Iterable[str], note: str) -> Rule:
    return Rule(fn, tuple(ours), note)


HERE_ON_POLICY = "the reference model and the critic run on the policy's workers here"
FSDP_ONLY = "memory placement of SkyRL's FSDP workers; the same updates"
ENGINE_TUNING = "inference engine tuning; results are the same"
_placement_rule = _rule(_placement, ("runtime.colocate", "runtime.mode", "runtime.train_gpus",
                                     "runtime.inference_gpus", "strategy.name"),
                        "one GPU: runtime.mode = 'local'; more: 'ray' with fsdp2 on nodes x GPUs per node")
_tis_rule = _rule(_tis, ("algorithm.tis.mode", "algorithm.tis.cap", "algorithm.tis.sequence_mask"),
                  "[algorithm.tis]; see docs/skyrl_conventions.md")
_dapo_rule = _rule(_dapo, ("dapo.dynamic_sampling", "dapo.overlong_filtering", "dapo.overlong_punishment"),
                   "the [dapo] section of skyrl-algo-dapo, every piece set explicitly")
_kl_rule = _rule(_kl_mode, ("algorithm.kl.mode", "algorithm.kl.reduction"),
                 "mode 'loss' (KL reduced per sequence, as SkyRL) or 'reward'; set explicitly, ours is off")

"""SkyRL-Train's config keys and where each one goes in skyrl: the one translation table.

``skyrl config import-skyrl`` (``skyrl_core.config.skyrl_import``) applies it to a SkyRL YAML
file and Hydra overrides; the unknown-key errors of ``skyrl config validate`` read it to say
"``generator.n_samples_per_prompt`` is SkyRL's name: use ``[trainer] samples_per_prompt``"
(``skyrl_hint``); docs/migrating_from_skyrl.md shows it (``key_map_markdown``) and its test
checks the page against it.

Each ``SkyrlKey`` is one leaf of SkyRL-Train's ``ppo_base_config.yaml`` (its last release, and
the keys its example scripts add with ``+``) with SkyRL's default and a rule:

* ``Same``: the value carries over (``convert`` changes its form, not its meaning);
* ``Rule``: a function of the whole SkyRL config that may set several keys and report
  differences (units, conventions, defaults), or refuse a value it cannot reproduce;
* ``Ignored``: no effect on what is trained here (placement, kernels, logging paths), with why;
* ``NeutralOnly``: only SkyRL's neutral value(s) can be reproduced; any other value fails with
  what to do.

The rules themselves are in ``skyrl_core.config.skyrl_rules``. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from skyrl_core.config.skyrl_rules import (
    ENGINE_TUNING,
    EPS_CLIP_LOSSES,
    FSDP_ONLY,
    HERE_ON_POLICY,
    Ignored,
    NeutralOnly,
    Rule,
    RuleKind,
    Same,
    _append_eos,
    _backend,
    _batch_normalize,
    _chat_template,
    _component_option,
    _conversation,
    _critic_lr,
    _critic_mini,
    _critic_on,
    _critic_path,
    _critic_same,
    _dapo_rule,
    _engine_option,
    _entropy,
    _env_class,
    _epochs,
    _estimator,
    _eval_every,
    _eval_max_new,
    _eval_stop,
    _forward_micro,
    _keep,
    _kl_ctrl_type,
    _kl_on,
    _kl_reward,
    _kl_rule,
    _lora_on,
    _loss_reduction,
    _max_input,
    _max_seq_len,
    _micro_batch,
    _mini_batch,
    _placement_rule,
    _policy_loss,
    _project,
    _ref_path,
    _reshard,
    _resume,
    _rule,
    _scheduler,
    _show,
    _skyrl_gym,
    _strategy,
    _tis_rule,
    _trackers,
    _zero_variance,
    as_list,
)


@attrs.frozen
class SkyrlKey:
    """One SkyRL-Train config key: its dotted path, SkyRL's default and where it goes here."""

    key: str
    default: Any
    rule: RuleKind

    @property
    def ours(self) -> tuple[str, ...]:
        """Our keys this SkyRL key may set (dotted; ``<...>`` marks a placeholder)."""
        if isinstance(self.rule, Same):
            return (self.rule.key,)
        if isinstance(self.rule, Rule):
            return self.rule.ours
        return ()

    @property
    def note(self) -> str:
        """How the key translates, in a few words (the docs' key map and the unknown-key hint)."""
        rule = self.rule
        if isinstance(rule, Same):
            return rule.note or "the same"
        if isinstance(rule, Rule):
            return rule.note
        if isinstance(rule, Ignored):
            return f"ignored: {rule.reason}"
        return f"only {' / '.join(_show(n) for n in rule.neutral)}: {rule.advice}"


def _ignored_all(prefix: str, keys: Mapping[str, Any], reason: str) -> list[SkyrlKey]:
    return [SkyrlKey(f"{prefix}.{k}", v, Ignored(reason)) for k, v in keys.items()]


# -- the table -----------------------------------------------------------------------------------

TABLE: tuple[SkyrlKey, ...] = (
    # data
    SkyrlKey("data.train_data", ["${oc.env:HOME}/data/gsm8k/train.parquet"], Same("data.train", as_list)),
    SkyrlKey("data.val_data", ["${oc.env:HOME}/data/gsm8k/validation.parquet"], Same("data.eval", as_list)),
    # placement and strategy
    SkyrlKey("trainer.placement.colocate_all", True, _placement_rule),
    SkyrlKey("trainer.placement.policy_num_nodes", 1, _placement_rule),
    SkyrlKey("trainer.placement.policy_num_gpus_per_node", 1, _placement_rule),
    SkyrlKey("trainer.placement.colocate_policy_ref", True, Ignored(HERE_ON_POLICY)),
    *_ignored_all("trainer.placement", {"critic_num_nodes": 1, "critic_num_gpus_per_node": 1, "ref_num_nodes": 1,
                                        "ref_num_gpus_per_node": 1}, HERE_ON_POLICY),
    SkyrlKey("trainer.sequence_parallel_backend", "ulysses",
             Ignored("only used with sequence_parallel_size > 1")),
    SkyrlKey("trainer.strategy", "fsdp2", _rule(_strategy, ("strategy.name",),
                                                "fsdp/fsdp2 -> fsdp2 (local on one GPU); megatron fails")),
    # policy model, LoRA, optimizer
    SkyrlKey("trainer.policy.model.path", "Qwen/Qwen2.5-1.5B-Instruct", Same("model.path")),
    SkyrlKey("trainer.policy.model.lora.rank", 0, Same("model.lora.rank")),
    SkyrlKey("trainer.policy.model.lora.alpha", 16, Same("model.lora.alpha", float, _lora_on)),
    SkyrlKey("trainer.policy.model.lora.dropout", 0, Same("model.lora.dropout", float, _lora_on)),
    SkyrlKey("trainer.policy.model.lora.target_modules", "all-linear",
             Same("model.lora.target_modules", as_list, _lora_on)),
    SkyrlKey("trainer.policy.model.lora.exclude_modules", None, Same("model.lora.exclude_modules", as_list, _lora_on)),
    SkyrlKey("trainer.policy.model.lora.lora_sync_path", "/tmp/skyrl_lora_sync",
             Ignored("adapters reach the engine without a folder here ([model.lora] sync)")),
    SkyrlKey("trainer.policy.model.lora.init_method", "kaiming",
             NeutralOnly(("kaiming",), "peft's default initialisation (kaiming) is the only one here")),
    SkyrlKey("trainer.policy.optimizer_config.lr", 1.0e-6, Same("trainer.lr")),
    SkyrlKey("trainer.policy.optimizer_config.adam_betas", [0.9, 0.999], Same("trainer.betas", list)),
    SkyrlKey("trainer.policy.optimizer_config.weight_decay", 1e-2, Same("trainer.weight_decay")),
    SkyrlKey("trainer.policy.optimizer_config.max_grad_norm", 1.0, Same("trainer.grad_clip")),
    SkyrlKey("trainer.policy.optimizer_config.offload_after_step", True,
             Ignored("optimizer offload between phases is the strategy's memory management")),
    SkyrlKey("trainer.policy.optimizer_config.num_warmup_steps", 0,
             Same("trainer.warmup_steps", note="warmup: both count optimizer (mini-batch) steps")),
    SkyrlKey("trainer.policy.optimizer_config.scheduler", "constant_with_warmup",
             _rule(_scheduler, ("trainer.lr_schedule",), "constant_with_warmup -> constant, cosine, linear")),
    SkyrlKey("trainer.policy.fsdp_config.cpu_offload", False, Ignored(FSDP_ONLY)),
    SkyrlKey("trainer.policy.fsdp_config.reshard_after_forward", True,
             _rule(_reshard, ("strategy.reshard_after_forward",), "the same (fsdp2)")),
    SkyrlKey("trainer.policy.fsdp_config.fsdp_size", -1, Ignored(FSDP_ONLY)),
    SkyrlKey("trainer.policy.sequence_parallel_size", 1,
             Ignored("no sequence parallelism here: the same updates, but each sequence must fit one GPU")),
    SkyrlKey(
        "trainer.policy.use_torch_compile",
        False,
        Ignored("a kernel choice; the same results (ours: `[strategy] compile = true` with the local strategy)"),
    ),
    SkyrlKey("trainer.policy.record_memory", False, Ignored("a debugging aid")),
    SkyrlKey("trainer.policy.model_config_kwargs", {},
             NeutralOnly(({},), "changing the model's config is not available; edit the model folder's config.json")),
    SkyrlKey("trainer.policy.megatron_config", None, Ignored("used only with trainer.strategy=megatron")),
    # reference and critic
    SkyrlKey("trainer.ref.model.path", "${trainer.policy.model.path}",
             _rule(_ref_path, ("model.ref_path",), "model.ref_path when it is not the policy's")),
    SkyrlKey("trainer.ref.sequence_parallel_size", 1, Ignored(HERE_ON_POLICY)),
    *_ignored_all("trainer.ref.fsdp_config", {"cpu_offload": False, "reshard_after_forward": True,
                                              "fsdp_size": -1}, HERE_ON_POLICY),
    SkyrlKey("trainer.ref.model_config_kwargs", {},
             NeutralOnly(({},), "changing the model's config is not available; edit the model folder's config.json")),
    SkyrlKey("trainer.ref.megatron_config", None, Ignored("used only with trainer.strategy=megatron")),
    SkyrlKey("trainer.critic.model.path", None, _rule(_critic_path, ("model.critic_path",), "the same")),
    SkyrlKey("trainer.critic.model.lora.rank", 0, NeutralOnly((0,), "LoRA for the critic is not available here")),
    *_ignored_all("trainer.critic.model.lora", {"alpha": 16, "dropout": 0, "target_modules": "all-linear",
                                                "exclude_modules": None, "init_method": "kaiming"},
                  "used only with critic LoRA (rank > 0)"),
    SkyrlKey("trainer.critic.optimizer_config.lr", 5.0e-6,
             _rule(_critic_lr, ("strategy.critic_lr",), "strategy.critic_lr when a critic is trained (gae)")),
    SkyrlKey("trainer.critic.optimizer_config.adam_betas", [0.9, 0.999],
             _rule(_critic_same("trainer.policy.optimizer_config.adam_betas"), (), "must equal the policy's")),
    SkyrlKey("trainer.critic.optimizer_config.weight_decay", 1e-2,
             _rule(_critic_same("trainer.policy.optimizer_config.weight_decay"), (), "must equal the policy's")),
    SkyrlKey("trainer.critic.optimizer_config.max_grad_norm", 1.0,
             _rule(_critic_same("trainer.policy.optimizer_config.max_grad_norm"), (), "must equal the policy's")),
    SkyrlKey("trainer.critic.optimizer_config.num_warmup_steps", 0,
             _rule(_critic_same("trainer.policy.optimizer_config.num_warmup_steps"), (), "must equal the policy's")),
    SkyrlKey("trainer.critic.optimizer_config.scheduler", "constant_with_warmup",
             _rule(_critic_same("trainer.policy.optimizer_config.scheduler"), (), "must equal the policy's")),
    SkyrlKey("trainer.critic.optimizer_config.offload_after_step", True,
             Ignored("optimizer offload between phases is the strategy's memory management")),
    *_ignored_all("trainer.critic.fsdp_config", {"cpu_offload": False, "reshard_after_forward": True,
                                                 "fsdp_size": -1}, HERE_ON_POLICY),
    SkyrlKey("trainer.critic.sequence_parallel_size", 1, Ignored(HERE_ON_POLICY)),
    SkyrlKey("trainer.critic.model_config_kwargs", {},
             NeutralOnly(({},), "changing the model's config is not available; edit the model folder's config.json")),
    # algorithm
    SkyrlKey("trainer.algorithm.advantage_estimator", "grpo",
             _rule(_estimator, ("algorithm.advantage.name", "algorithm.advantage.whiten_variance",
                                "algorithm.advantage.singleton_advantage", "algorithm.value_reduction"),
                   "the same name (grpo, rloo, reinforce++, gae), with SkyRL-train's whitening, GRPO singletons "
                   "and value-loss reduction")),
    SkyrlKey("trainer.algorithm.kl_ctrl.type", "fixed",
             _rule(_kl_ctrl_type, ("algorithm.kl.adaptive",), "adaptive = true for 'adaptive' (KL in the reward)")),
    SkyrlKey("trainer.algorithm.kl_ctrl.kl_target", 0.1, Same("algorithm.kl.target", when=_kl_reward)),
    SkyrlKey("trainer.algorithm.kl_ctrl.horizon", 10000, Same("algorithm.kl.horizon", when=_kl_reward)),
    SkyrlKey("trainer.algorithm.kl_estimator_type", "k3", Same("algorithm.kl.estimator", when=_kl_on)),
    SkyrlKey("trainer.algorithm.use_kl_in_reward", False, _kl_rule),
    SkyrlKey("trainer.algorithm.use_kl_loss", True, _kl_rule),
    SkyrlKey("trainer.algorithm.kl_loss_coef", 0.001, Same("algorithm.kl.coef", when=_kl_on)),
    SkyrlKey("trainer.algorithm.use_entropy_loss", False,
             _rule(_entropy, ("algorithm.entropy_coef", "algorithm.entropy_reduction"),
                   "entropy_coef = entropy_loss_coef, reduced per micro-batch as SkyRL-train")),
    SkyrlKey("trainer.algorithm.entropy_loss_coef", 0.01,
             _rule(_entropy, ("algorithm.entropy_coef",), "entropy_coef when use_entropy_loss")),
    SkyrlKey("trainer.algorithm.advantage_batch_normalize", False,
             _rule(_batch_normalize, ("algorithm.advantage.batch_normalize",), "the same (grpo, rloo)")),
    SkyrlKey("trainer.algorithm.value_head_prefix", "value_head", Ignored("a checkpoint naming detail")),
    SkyrlKey("trainer.algorithm.policy_loss_type", "regular",
             _rule(_policy_loss, ("algorithm.policy_loss.name",), "regular -> ppo_clip; others by the same name")),
    SkyrlKey("trainer.algorithm.loss_reduction", "token_mean",
             _rule(_loss_reduction, ("algorithm.loss_reduction", "algorithm.legacy_micro_batch_sequences",
                                     "algorithm.empty_sequences", "algorithm.loss_norm_tokens"),
                   "token_mean -> token_mean_legacy (SkyRL-train); see docs/skyrl_conventions.md")),
    SkyrlKey("trainer.algorithm.grpo_norm_by_std", True,
             _rule(_component_option("norm_by_std", estimators=("grpo",)), ("algorithm.advantage.norm_by_std",),
                   "the same (grpo)")),
    SkyrlKey("trainer.algorithm.zero_variance_filter", False,
             _rule(_zero_variance, ("algorithm.zero_variance_filter", "algorithm.zero_variance_tol"),
                   "zero_variance_filter = 'mask'")),
    SkyrlKey("trainer.algorithm.lambd", 1.0,
             _rule(_component_option("lam", estimators=("gae",)), ("algorithm.advantage.lam",), "the same (gae)")),
    SkyrlKey("trainer.algorithm.gamma", 1.0,
             _rule(_component_option("gamma", estimators=("gae", "reinforce++", "reinforce++_baseline")),
                   ("algorithm.advantage.gamma",), "the same (gae, reinforce++)")),
    SkyrlKey("trainer.algorithm.eps_clip_low", 0.2,
             _rule(_component_option("eps_low", losses=EPS_CLIP_LOSSES), ("algorithm.policy_loss.eps_low",),
                   "the same (ppo_clip, dual_clip, clip_cov, gspo, rollout_is)")),
    SkyrlKey("trainer.algorithm.eps_clip_high", 0.2,
             _rule(_component_option("eps_high", losses=EPS_CLIP_LOSSES), ("algorithm.policy_loss.eps_high",),
                   "the same (ppo_clip, dual_clip, clip_cov, gspo, rollout_is)")),
    SkyrlKey("trainer.algorithm.clip_ratio_c", 3.0,
             _rule(_component_option("clip_ratio_c", losses=("dual_clip",)),
                   ("algorithm.policy_loss.clip_ratio_c",), "the same (dual_clip)")),
    SkyrlKey("trainer.algorithm.tis_imp_ratio_cap", -1.0, _tis_rule),
    SkyrlKey("trainer.algorithm.use_tis", False, _tis_rule),
    SkyrlKey("trainer.algorithm.max_seq_len", None,
             _rule(_max_seq_len, ("algorithm.loss_norm_tokens",), "loss_norm_tokens (seq_mean_token_sum_norm)")),
    *[SkyrlKey(f"trainer.algorithm.off_policy_correction.{k}", v, _tis_rule) for k, v in {
        "tis_ratio_type": None, "token_tis_ratio_clip_high": 2.0, "sequence_tis_ratio_clip_high": 5.0,
        "sequence_mask_metric": None, "geo_mask_high": 1.01, "geo_mask_low": 0.99, "product_mask_high": 2.0,
        "product_mask_low": 0.5, "outlier_token_is_threshold_low": None, "outlier_token_is_threshold_high": None,
        "token_mask_is_threshold_low": None, "token_mask_is_threshold_high": None}.items()],
    SkyrlKey("trainer.algorithm.sapo.tau_pos", 1.0,
             _rule(_component_option("tau_pos", losses=("sapo",)), ("algorithm.policy_loss.tau_pos",), "the same")),
    SkyrlKey("trainer.algorithm.sapo.tau_neg", 1.05,
             _rule(_component_option("tau_neg", losses=("sapo",)), ("algorithm.policy_loss.tau_neg",), "the same")),
    SkyrlKey("trainer.algorithm.value_clip", 0.2, Same("algorithm.value_clip", when=_critic_on)),
    SkyrlKey("trainer.algorithm.dynamic_sampling.type", None, _dapo_rule),
    SkyrlKey("trainer.algorithm.dynamic_sampling.max_sample_batches", 30, _dapo_rule),
    SkyrlKey("trainer.algorithm.dynamic_sampling.min_replace_ratio", 0.3,
             Ignored("used only by dynamic_sampling.type = replace, which is not available")),
    SkyrlKey("trainer.algorithm.overlong_buffer.len", None, _dapo_rule),
    SkyrlKey("trainer.algorithm.overlong_buffer.penalty_factor", None, _dapo_rule),
    SkyrlKey("trainer.algorithm.clip_cov.clip_ratio", 0.0002,
             _rule(_component_option("clip_ratio", losses=("clip_cov",)), ("algorithm.policy_loss.clip_ratio",),
                   "the same")),
    SkyrlKey("trainer.algorithm.clip_cov.clip_cov_lb", 1.0,
             _rule(_component_option("clip_cov_lb", losses=("clip_cov",)), ("algorithm.policy_loss.clip_cov_lb",),
                   "the same")),
    SkyrlKey("trainer.algorithm.clip_cov.clip_cov_ub", 5.0,
             _rule(_component_option("clip_cov_ub", losses=("clip_cov",)), ("algorithm.policy_loss.clip_cov_ub",),
                   "the same")),
    SkyrlKey("trainer.algorithm.kl_cov.kl_cov_frac", 0.2,
             _rule(_component_option("kl_cov_ratio", losses=("kl_cov",)), ("algorithm.policy_loss.kl_cov_ratio",),
                   "kl_cov_ratio (our default 0.002 is the paper's)")),
    SkyrlKey("trainer.algorithm.kl_cov.ppo_kl_coef", 1.0,
             _rule(_component_option("kl_coef", losses=("kl_cov",)), ("algorithm.policy_loss.kl_coef",), "the same")),
    SkyrlKey("trainer.algorithm.cispo.cispo_eps_clip_low", 0,
             _rule(_component_option("eps_low", losses=("cispo",), convert=float), ("algorithm.policy_loss.eps_low",),
                   "eps_low (our default 1.0 has no lower bound)")),
    SkyrlKey("trainer.algorithm.cispo.cispo_eps_clip_high", 5,
             _rule(_component_option("eps_high", losses=("cispo",), convert=float),
                   ("algorithm.policy_loss.eps_high",), "the same")),
    SkyrlKey("trainer.fully_async.max_staleness_steps", 4,
             Ignored("read only by SkyRL's fully-async entry point; here: [trainer] mode = 'async', max_staleness")),
    SkyrlKey("trainer.fully_async.num_parallel_generation_workers", 768,
             Ignored("read only by SkyRL's fully-async entry point")),
    # schedule, checkpoints, logging
    SkyrlKey("trainer.gradient_checkpointing", True, Same("trainer.gradient_checkpointing")),
    SkyrlKey("trainer.gradient_checkpointing_use_reentrant", False, Ignored("an implementation detail")),
    SkyrlKey("trainer.seed", 42, Same("run.seed")),
    SkyrlKey("trainer.resume_mode", "latest", _rule(_resume, ("checkpoint.resume",),
                                                    "latest -> 'auto', null -> 'never', from_path -> the path")),
    SkyrlKey("trainer.resume_path", None, _rule(_resume, ("checkpoint.resume",), "checkpoint.resume")),
    SkyrlKey("trainer.log_path", "/tmp/skyrl-logs", Ignored("infrastructure logs; ours go to stderr and the run dir")),
    SkyrlKey("trainer.ckpt_path", "${oc.env:HOME}/ckpts/",
             Ignored("checkpoints are written under the run directory ([run] dir)")),
    SkyrlKey("trainer.max_ckpts_to_keep", -1, _rule(_keep, ("checkpoint.keep_last",), "checkpoint.keep_last")),
    SkyrlKey("trainer.ckpt_interval", 10, Same("checkpoint.every")),
    SkyrlKey("trainer.hf_save_interval", -1,
             Ignored("Hugging Face exports: at the end of the run here ([checkpoint] export_at_end), "
                     "or `skyrl export` from any checkpoint")),
    SkyrlKey("trainer.export_path", "${oc.env:HOME}/exports/", Ignored("the export is <run dir>/export here")),
    SkyrlKey("trainer.bf16", True, Same("model.dtype", lambda v: "bfloat16" if v else "float32",
                                        note="bf16: bfloat16 compute with fp32 master weights in both")),
    SkyrlKey("trainer.epochs", 1, _rule(_epochs, ("trainer.steps",),
                                        "steps = epochs x (training rows // train_batch_size)")),
    SkyrlKey("trainer.update_epochs_per_batch", 1, Same("trainer.epochs_per_step")),
    SkyrlKey("trainer.train_batch_size", 1024, Same("trainer.prompts_per_step", note="")),
    SkyrlKey("trainer.policy_mini_batch_size", 256,
             _rule(_mini_batch, ("trainer.prompts_per_minibatch",), "the same unit (prompts)")),
    SkyrlKey("trainer.critic_mini_batch_size", 256, _rule(_critic_mini, (), "must equal policy_mini_batch_size")),
    SkyrlKey("trainer.micro_train_batch_size_per_gpu", 1,
             _rule(_micro_batch("trainer.micro_batch_tokens"), ("trainer.micro_batch_tokens",),
                   "sequences x (max input + max generate length) tokens")),
    SkyrlKey("trainer.micro_forward_batch_size_per_gpu", 1,
             _rule(_forward_micro, ("strategy.forward_micro_batch_tokens",),
                   "sequences x (max input + max generate length) tokens")),
    SkyrlKey("trainer.update_ref_every_epoch", False, Same("algorithm.kl.update_ref_every_epoch")),
    SkyrlKey("trainer.use_sample_packing", True,
             Ignored("packing changes speed, not results ([strategy] packing, off by default)")),
    SkyrlKey("trainer.eval_batch_size", 1024,
             Ignored("evaluation generates every row at once, at most [generator] max_concurrent in flight")),
    SkyrlKey("trainer.eval_before_train", True, Same("eval.before_train")),
    SkyrlKey("trainer.eval_interval", 5, _rule(_eval_every, ("eval.every",), "eval.every (-1: 0, no eval before)")),
    SkyrlKey("trainer.max_prompt_length", 512, Same("data.max_prompt_tokens")),
    SkyrlKey("trainer.flash_attn", True, Ignored("an attention kernel ([model] attn_implementation); same results")),
    SkyrlKey("trainer.disable_fast_tokenizer", False,
             NeutralOnly((False,), "the slow tokenizer is not available; the fast one is always used")),
    SkyrlKey("trainer.project_name", "skyrl", _rule(_project, ("tracking.wandb.project",),
                                                    "the W&B / MLflow tracker's project")),
    SkyrlKey("trainer.run_name", "test_run", Same("run.name")),
    SkyrlKey("trainer.logger", "wandb", _rule(_trackers, ("tracking.trackers",),
                                              "tracking.trackers (console and jsonl always)")),
    SkyrlKey("trainer.dump_data_batch", False, Ignored("a debugging dump")),
    SkyrlKey("trainer.dump_eval_results", True, Ignored("eval samples are always written to <run dir>/eval")),
    SkyrlKey("trainer.rope_scaling", None, NeutralOnly((None,), "edit rope_scaling in the model folder's config.json")),
    SkyrlKey("trainer.rope_theta", None, NeutralOnly((None,), "edit rope_theta in the model folder's config.json")),
    # generator
    SkyrlKey("generator.model_name", "${trainer.policy.model.path}", Ignored("the engine serves [model] path")),
    SkyrlKey("generator.model_dtype", "bfloat16",
             _rule(_engine_option, ("backend.dtype",), "the backend's dtype (default: the [model] dtype)")),
    SkyrlKey("generator.run_engines_locally", True,
             NeutralOnly((True,), "remote engines: use the vllm-remote backend (see docs/backends.md)")),
    SkyrlKey("generator.num_inference_engines", 1, _placement_rule),
    SkyrlKey("generator.backend", "vllm", _rule(_backend, ("backend.name",), "vllm / sglang (or --backend)")),
    SkyrlKey("generator.weight_sync_backend", "nccl",
             Ignored("the transport follows placement here ([runtime] weight_sync = 'auto')")),
    SkyrlKey("generator.weight_transfer_threshold_cuda_ipc_GB", 1.0,
             Ignored("a transfer bucket size ([runtime] weight_sync_bucket_mb)")),
    SkyrlKey("generator.external_proxy_url", None,
             NeutralOnly((None,), "external servers: use the vllm-remote backend (see docs/backends.md)")),
    SkyrlKey("generator.external_server_urls", None,
             NeutralOnly((None,), "external servers: use the vllm-remote backend (see docs/backends.md)")),
    SkyrlKey("generator.inference_engine_tensor_parallel_size", 1,
             _rule(_engine_option, ("backend.tensor_parallel_size",), "the backend's tensor parallelism")),
    SkyrlKey("generator.inference_engine_pipeline_parallel_size", 1,
             NeutralOnly((1,), "pipeline-parallel engines are not available; use tensor parallelism")),
    SkyrlKey("generator.inference_engine_expert_parallel_size", 1,
             NeutralOnly((1,), "expert-parallel engines are not available; use tensor parallelism")),
    SkyrlKey("generator.inference_engine_data_parallel_size", 1,
             NeutralOnly((1,), "use generator.num_inference_engines for more engines")),
    SkyrlKey("generator.n_samples_per_prompt", 5, Same("trainer.samples_per_prompt")),
    SkyrlKey("generator.async_engine", True, Ignored("engines are always asynchronous here")),
    SkyrlKey("generator.batched", False, Ignored("batching is the engine's; the same samples")),
    SkyrlKey("generator.max_input_length", "${trainer.max_prompt_length}",
             _rule(_max_input, ("generator.max_total_tokens",), "max_total_tokens = max input + max generate length")),
    SkyrlKey("generator.vllm_v1_disable_multiproc", True, Ignored(ENGINE_TUNING)),
    SkyrlKey("generator.enable_prefix_caching", True,
             _rule(_engine_option, ("backend.enable_prefix_caching",), "the backend's prefix cache")),
    SkyrlKey("generator.enable_chunked_prefill", True, Ignored(ENGINE_TUNING)),
    SkyrlKey("generator.max_num_batched_tokens", 8192, Ignored(ENGINE_TUNING)),
    SkyrlKey("generator.enforce_eager", True, _rule(_engine_option, ("backend.enforce_eager",), "the same (vllm)")),
    SkyrlKey("generator.fully_sharded_loras", False, Ignored(ENGINE_TUNING)),
    SkyrlKey("generator.enable_ray_prometheus_stats", False, Ignored("engine metrics export")),
    SkyrlKey("generator.gpu_memory_utilization", 0.8,
             _rule(_engine_option, ("backend.gpu_memory_utilization",), "the backend's memory fraction")),
    SkyrlKey("generator.max_num_seqs", 1024, _rule(_engine_option, ("backend.max_num_seqs",), "the same")),
    SkyrlKey("generator.remote_inference_engine_urls", ["127.0.0.1:8001"],
             Ignored("used only with run_engines_locally = false")),
    SkyrlKey("generator.enable_http_endpoint", False,
             NeutralOnly((False,), "an OpenAI-compatible endpoint for rollouts is not available; "
                                   "write an environment")),
    SkyrlKey("generator.http_endpoint_host", "127.0.0.1", Ignored("used only with enable_http_endpoint")),
    SkyrlKey("generator.http_endpoint_port", 8000, Ignored("used only with enable_http_endpoint")),
    SkyrlKey("generator.served_model_name", None, Ignored("used only with enable_http_endpoint")),
    SkyrlKey("generator.max_turns", 1, Same("generator.max_turns")),
    SkyrlKey("generator.chat_template.source", "name",
             _rule(_chat_template, ("model.chat_template",), "see name_or_path")),
    SkyrlKey("generator.chat_template.name_or_path", None,
             _rule(_chat_template, ("model.chat_template",), "model.chat_template (a file)")),
    SkyrlKey("generator.chat_template_kwargs", {}, Same("model.chat_template_kwargs", dict)),
    SkyrlKey("generator.engine_init_kwargs", {},
             _rule(_engine_option, ("backend.engine_kwargs",), "vllm engine_kwargs / sglang server_args")),
    SkyrlKey("generator.override_existing_update_group", "auto", Ignored("weight-sync group set-up")),
    SkyrlKey("generator.sampling_params.max_generate_length", 1024, Same("generator.max_new_tokens")),
    SkyrlKey("generator.sampling_params.repetition_penalty", 1.0,
             NeutralOnly((1.0, 1), "a repetition penalty is not available")),
    SkyrlKey("generator.sampling_params.temperature", 1.0, Same("generator.temperature", float)),
    SkyrlKey("generator.sampling_params.top_p", 1.0, Same("generator.top_p", float)),
    SkyrlKey("generator.sampling_params.min_p", 0.0, Same("generator.min_p", float)),
    SkyrlKey("generator.sampling_params.top_k", -1, Same("generator.top_k")),
    SkyrlKey("generator.sampling_params.logprobs", 1,
             Ignored("the sampled tokens' log-probabilities are always recorded")),
    SkyrlKey("generator.sampling_params.stop", None, Same("generator.stop", as_list)),
    SkyrlKey("generator.use_conversation_multi_turn", True,
             _rule(_conversation, (), "must be true for multi-turn (ours is always a conversation)")),
    SkyrlKey("generator.append_eos_token_after_stop_str_in_multi_turn", True,
             _rule(_append_eos, (), "reported as a difference (no EOS is added here)")),
    SkyrlKey("generator.eval_sampling_params.max_generate_length", "${generator.sampling_params.max_generate_length}",
             _rule(_eval_max_new, ("eval.max_new_tokens",), "eval.max_new_tokens")),
    SkyrlKey("generator.eval_sampling_params.repetition_penalty", 1.0,
             NeutralOnly((1.0, 1), "a repetition penalty is not available")),
    SkyrlKey("generator.eval_sampling_params.temperature", 0.0, Same("eval.temperature", float)),
    SkyrlKey("generator.eval_sampling_params.top_p", 1.0, Same("eval.top_p", float)),
    SkyrlKey("generator.eval_sampling_params.min_p", 0.0,
             NeutralOnly((0.0, 0), "evaluation has no min_p here; remove it")),
    SkyrlKey("generator.eval_sampling_params.top_k", -1,
             NeutralOnly((-1,), "evaluation has no top_k here; remove it")),
    SkyrlKey("generator.eval_sampling_params.logprobs", 1, Ignored("evaluation needs no log-probabilities")),
    SkyrlKey("generator.eval_sampling_params.stop", None,
             _rule(_eval_stop, (), "must equal the training stop strings")),
    SkyrlKey("generator.eval_n_samples_per_prompt", 1, Same("eval.samples_per_prompt")),
    SkyrlKey("generator.zero_reward_on_non_stop", False, Same("generator.zero_reward_on_non_stop")),
    SkyrlKey("generator.apply_overlong_filtering", False, _dapo_rule),
    SkyrlKey("generator.rope_scaling", "${trainer.rope_scaling}",
             NeutralOnly((None,), "edit rope_scaling in the model folder's config.json")),
    SkyrlKey("generator.rope_theta", "${trainer.rope_theta}",
             NeutralOnly((None,), "edit rope_theta in the model folder's config.json")),
    SkyrlKey("generator.step_wise_trajectories", False,
             NeutralOnly((False,), "step-wise trajectories are not available; a multi-turn episode trains as one "
                                   "sequence")),
    # environment
    SkyrlKey("environment.env_class", "gsm8k",
             _rule(_env_class, ("data.default_env_class", "data.env_map"),
                   "[data] default_env_class and env_map: skyrl-gym's environment through the adapter "
                   "(--env skyrlgym) or ours of the same name (--env native)")),
    SkyrlKey("environment.skyrl_gym", {},
             _rule(_skyrl_gym, ("environments.<name>.env_config",),
                   "each <id>.* becomes [environments.\"skyrl-env-skyrlgym:<id>\".env_config]")),
)

BY_KEY: dict[str, SkyrlKey] = {k.key: k for k in TABLE}
#: SkyRL keys whose value is a whole table (not split into leaves when read)
TABLE_VALUED = frozenset(k.key for k in TABLE if isinstance(k.default, dict) or k.key.endswith(
    ("megatron_config", "rope_scaling")))
ROOTS = frozenset(k.key.split(".")[0] for k in TABLE)


def lookup(key: str) -> SkyrlKey | None:
    """The table's entry for a SkyRL key, also for a key inside a table-valued one
    (``environment.skyrl_gym.text2sql.db_path``)."""
    if key in BY_KEY:
        return BY_KEY[key]
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in TABLE_VALUED:
            return BY_KEY[head]
    return None


# -- hints for the unknown-key errors ------------------------------------------------------------


def _table_ref(ours: str) -> str:
    """``trainer.samples_per_prompt`` -> ``[trainer] samples_per_prompt``."""
    table, _, key = ours.rpartition(".")
    return f"`[{table}] {key}`" if table else f"`{key}`"


def hint_for(entry: SkyrlKey) -> str:
    """What the unknown-key error says about one SkyRL key."""
    if entry.ours:
        where = " and ".join(_table_ref(o) for o in entry.ours[:2])
        note = entry.note
        extra = f" ({note})" if note and note != "the same" else ""
        return f"`{entry.key}` is SkyRL's name: use {where}{extra}"
    return f"`{entry.key}` is SkyRL's name; here: {entry.note}"


def skyrl_hint(path: str, value: Any = None) -> str:
    """The SkyRL hint for an unknown key at dotted ``path`` (``value``: what the file wrote there,
    which may be a table of SkyRL's deeper keys); '' when it is no SkyRL key."""
    found = []
    entry = lookup(path)
    if entry is not None:
        found.append(entry)
    elif isinstance(value, Mapping):
        for leaf in _leaves(path, value):
            entry = lookup(leaf)
            if entry is not None and entry not in found:
                found.append(entry)
    if not found:
        return ""
    hints = "; ".join(hint_for(e) for e in found[:3])
    more = f" (and {len(found) - 3} more SkyRL keys)" if len(found) > 3 else ""
    return f"{hints}{more}. `skyrl config import-skyrl` translates a whole SkyRL config."


def _leaves(prefix: str, value: Mapping[str, Any]) -> list[str]:
    out = []
    for key, sub in value.items():
        path = f"{prefix}.{key}"
        if isinstance(sub, Mapping) and path not in TABLE_VALUED and sub:
            out += _leaves(path, sub)
        else:
            out.append(path)
    return out


# -- the key map of docs/migrating_from_skyrl.md -------------------------------------------------


def _cell(value: Any) -> str:
    text = _show(value) if not isinstance(value, (list, dict)) else str(value).replace("'", '"')
    return text.replace("|", "\\|")


def key_map_markdown() -> str:
    """The table of every SkyRL key, its default and where it goes (docs/migrating_from_skyrl.md)."""
    lines = ["| SkyRL key | SkyRL default | skyrl | how |", "|---|---|---|---|"]
    for entry in TABLE:
        ours = ", ".join(f"`{o}`" for o in entry.ours) or "none"
        lines.append(f"| {entry.key} | {_cell(entry.default)} | {ours} | {entry.note.replace('|', '/')} |")
    return "\n".join(lines) + "\n"

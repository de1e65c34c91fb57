"""The ``local`` training strategy: one process, CPU or one GPU.

Owns the policy (fp32 master weights; bf16/fp16 through autocast), its AdamW optimizer
and LR schedule, and optionally a frozen reference copy (for KL) and a critic (a copy of
the policy's transformer with a scalar value head, for GAE). With ``[model.lora] rank > 0``
only LoRA adapters train (``skyrl_core.strategies.lora``): the frozen base stays in
``[model] dtype``, the reference is the base with adapters disabled (no copy), weights are
synced merged, and checkpoints hold the adapters. The loop talks to it only through
``skyrl_core.protocols.strategy.TrainingStrategy``::

    strategy = LocalStrategy(LocalStrategyConfig(), model=cfg.model, trainer=cfg.trainer, seed=cfg.run.seed)
    old = strategy.forward(batch, temperature=cfg.generator.temperature)        # ForwardOutput, (B, R)
    metrics = strategy.train_step(batch, loss_fn, temperature=cfg.generator.temperature)

Every pass right-pads ``prompt + response`` (or packs several sequences per row, ``[strategy]
packing``) into micro-batches packed by token budget and scores response token ``j`` from the
hidden state at ``prompt_len - 1 + j``; by default the LM head runs only at those positions
(see ``LocalStrategyConfig.logits``), and log-probs and entropy come from one fused kernel on
CUDA (``token_outputs``). Sequences of a micro-batch that share their prompt (GRPO's groups)
run the prompt once by default (``[strategy] shared_prefix``, ``strategies.shared_prefix``).
``train_step`` is the shared step of ``skyrl_core.strategies.update`` (the one ``fsdp2``'s
workers run too): gradient accumulation over the micro-batches, the non-finite skip, clipping,
fp16 loss scaling, the AdamW and schedule steps, and the metrics.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.strategy import ForwardOutput, LossFn, ModelRole, TrainBatch
from skyrl_core.strategies import lora, memory, model_parts, shared_prefix, token_outputs, update
from skyrl_core.strategies.batch_layout import (
    Collated,
    check_packing_width,
    collate,
    logits_probe,
    packing_agrees,
    packing_error,
    packing_probe,
    to_device,
)
from skyrl_core.strategies.checkpoint_files import (
    CRITIC_OPTIMIZER,
    CRITIC_SCHEDULER,
    CRITIC_WEIGHTS,
    GRAD_SCALER,
    POLICY_OPTIMIZER,
    POLICY_SCHEDULER,
    POLICY_WEIGHTS,
    REF_WEIGHTS,
    RNG_STATE,
    STRATEGY_STATE,
    CheckpointError,
    replace_dir,
    require_files,
    rng_state,
    set_rng_state,
)
from skyrl_core.strategies.local_config import LocalStrategyConfig
from skyrl_core.strategies.micro_batching import loss_scale, pack_by_token_budget
from skyrl_core.strategies.offload import HostOffloader
from skyrl_core.strategies.optim import Trainable, build_trainable

_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class LocalStrategy:
    """Single-process training strategy (see the module docstring).

    Args:
        config: the ``[strategy]`` options (``LocalStrategyConfig``; None for defaults).
        model: ``[model]``: path, dtype (``float32``, or ``bfloat16``/``float16`` autocast
            over fp32 master weights), device (``auto`` picks CUDA when present).
        trainer: ``[trainer]``: lr, betas, weight decay, grad clip, schedule, warmup,
            micro-batch token budget, gradient checkpointing, NaN skipping.
        seed: seeds the critic head's initialisation (the loop owns the global RNGs).
        need_ref: keep a frozen copy of the initial policy for ``role="ref"``.
        need_critic: build a value model for ``role="critic"``, with its own AdamW.
        total_optimizer_steps: the schedule's horizon (cosine / linear decay).
    """

    def __init__(
        self,
        config: LocalStrategyConfig | None,
        *,
        model: ModelConfig,
        trainer: TrainerConfig,
        seed: int,
        need_ref: bool = False,
        need_critic: bool = False,
        total_optimizer_steps: int = 1,
    ) -> None:
        from skyrl_core.models.loading import load_causal_lm, load_companion, resolve_device

        self.config = config if config is not None else LocalStrategyConfig()
        self.model_config = model
        self.trainer = trainer
        check_packing_width(self.config, trainer)
        self.seed = seed
        self.total_optimizer_steps = max(1, int(total_optimizer_steps))
        self.device = resolve_device(model.device)
        self._autocast_dtype = _AUTOCAST_DTYPES.get(model.dtype)
        self._offloaded = False
        self._offloader = HostOffloader()
        self.optimizer_steps = 0

        # A LoRA base is frozen: it needs no fp32 master copy, so it stays in [model] dtype.
        base_dtype = getattr(torch, model.dtype) if lora.enabled(model) else torch.float32
        policy = load_causal_lm(model, device=self.device, dtype=base_dtype)
        self.peft = None
        if lora.enabled(model):
            self.peft = lora.apply(policy, model.lora, base_path=str(model.path), seed=seed)
        if self.config.disable_dropout:
            model_parts.disable_dropout(policy)
            if self.peft is not None:
                lora.set_adapter_dropout(policy, model.lora.dropout)  # the user's explicit choice stays
        self.policy = policy  # with LoRA: the same module, adapters injected
        self.need_ref = need_ref
        self.ref: nn.Module | None = None  # None with LoRA and no ref_path: the base is the reference
        if need_ref and model.ref_path is not None:
            self.ref = load_companion(model, model.ref_path, "ref_path", dtype=base_dtype, device=self.device)
            model_parts.check_vocabulary(policy, self.ref, "ref_path")
            self.ref.requires_grad_(False)
        elif need_ref and self.peft is None:
            self.ref = copy.deepcopy(policy).eval().requires_grad_(False)
        self._adapter_version = 0
        critic: model_parts.ValueModel | None = None
        if need_critic:
            critic = self._build_critic(model, policy, seed, base_dtype)
        trainable = [p for m in (policy, critic) if m is not None for p in m.parameters() if p.requires_grad]
        self.checkpointing = memory.decide_checkpointing(
            trainer.gradient_checkpointing,
            config=policy.config,
            tokens=trainer.micro_batch_tokens,
            device=self.device,
            compute_bytes=4 if self._autocast_dtype is None else 2,
            pending_bytes=memory.optimizer_bytes(sum(p.numel() for p in trainable)),
        )
        memory.announce(self.checkpointing, trainer.gradient_checkpointing, "local")
        if self.checkpointing.on:
            model_parts.enable_checkpointing(policy)
            if critic is not None:
                model_parts.enable_checkpointing(critic.backbone)
            if self.peft is not None:
                lora.enable_input_grads(policy)

        self.logits_mode = self._choose_logits_mode()
        if self.config.packing:
            self._check_packing()
        self._policy = self._trainable(policy, trainer.lr)
        self._critic = None
        if critic is not None:
            self._critic = self._trainable(critic, self.config.critic_lr or trainer.lr)
        self.prefix_sharing = self._choose_shared_prefix()
        #: whether the transformer blocks run compiled (``[strategy] compile``, resolved)
        self.compiled = model_parts.resolve_compile(self.config.compile, self.device) and self._compile(
            strict=self.config.compile is True
        )

    # -- construction helpers ---------------------------------------------------------------

    def _build_critic(
        self, model: ModelConfig, policy: nn.Module, seed: int, dtype: torch.dtype
    ) -> model_parts.ValueModel:
        """A value model: a copy of the policy's transformer body, or the body of ``[model] critic_path``
        (with LoRA adapters of its own when the policy trains adapters), plus a new scalar head."""
        from skyrl_core.models.loading import load_companion

        source, key = policy, "path"
        if model.critic_path is not None:
            key = "critic_path"
            source = load_companion(model, model.critic_path, key, dtype=dtype, device=self.device)
            model_parts.check_vocabulary(policy, source, key)
            if self.config.disable_dropout:
                model_parts.disable_dropout(source)
            if self.peft is not None:
                lora.apply(source, model.lora, base_path=str(model.critic_path), seed=seed)
                lora.set_adapter_dropout(source, model.lora.dropout)
        body = model_parts.backbone(source)
        if body is None:
            raise SkyrlError(
                f"[model] {key} = {getattr(model, key)!r}: {type(source).__name__} exposes no transformer body "
                "(base_model), so the local strategy cannot build a critic from it; turn the critic off "
                "(use an estimator other than 'gae')"
            )
        generator = torch.Generator().manual_seed(seed)
        body = copy.deepcopy(body) if source is policy else body
        return model_parts.ValueModel(body, model_parts.hidden_size(source), generator).to(self.device)

    def _trainable(self, module: nn.Module, lr: float) -> Trainable:
        """Fused AdamW on CUDA, the LR schedule, and a ``GradScaler`` under fp16 autocast."""
        return build_trainable(
            module,
            lr=lr,
            trainer=self.trainer,
            total_steps=self.total_optimizer_steps,
            device=self.device,
            grad_scaler=self._autocast_dtype is torch.float16,
        )

    @torch.no_grad()
    def _choose_logits_mode(self) -> str:
        """'sliced' when the LM head on gathered hidden states reproduces the model's logits."""
        mode = self.config.logits
        has_parts = model_parts.backbone(self.policy) is not None and self.policy.get_output_embeddings() is not None
        if mode == "sliced" and not has_parts:
            raise SkyrlError(
                f"[strategy] logits = 'sliced': {type(self.policy).__name__} has no separate transformer body and "
                "output layer; use logits = 'full' or 'auto'"
            )
        if mode != "auto":
            return mode
        if not has_parts:
            return "full"
        vocab = int(self.policy.get_output_embeddings().weight.shape[0])
        c = collate(logits_probe(vocab), self.device)
        self.policy.eval()
        sliced = self._policy_logits(c, mode="sliced")
        full = self._policy_logits(c, mode="full")
        ok = torch.allclose(sliced.float(), full.float(), rtol=1e-4, atol=1e-4)
        return "sliced" if ok else "full"

    @torch.no_grad()
    def _probe_logprobs(self, probe: TrainBatch, **layout: bool) -> Tensor:
        """The policy's log-probs (eval mode, no grad) of a start-up probe batch collated with ``layout``
        (``packed=`` or ``shared_prefix=``): start-up checks compare two layouts with it."""
        self.policy.eval()
        c = collate(probe, self.device, **layout)
        with self._autocast():
            logits = self._policy_logits(c, mode=self.logits_mode)
        return c.scatter(token_outputs.logprob_outputs(logits, c.targets, 1.0, False)["logprobs"])

    @torch.no_grad()
    def _check_packing(self) -> None:
        """``packing = true``: packed rows must give the padded rows' log-probs (the model's
        attention must keep packed sequences apart), else a clear error at start-up."""
        probe = packing_probe(int(self.policy.get_input_embeddings().weight.shape[0]))
        results = [self._probe_logprobs(probe, packed=packed) for packed in (False, True)]
        if not packing_agrees(*results, low_precision=self._autocast_dtype is not None):
            raise packing_error(self.policy)

    @torch.no_grad()
    def _choose_shared_prefix(self) -> bool:
        """Whether micro-batches whose sequences share prompts run in the shared-prompt layout
        (``[strategy] shared_prefix``; see ``skyrl_core.strategies.shared_prefix``)."""
        mode = self.config.shared_prefix
        if mode is False:
            return False
        if mode == "auto" and self.device.type != "cpu":
            # On one H100 the plain layout's flash attention beat the gathered-cache attention (GRPO
            # bench update 2.11 s plain vs 3.03 s shared; bench/RESULTS.md): 'auto' is off off the CPU.
            return False
        reason = self._shared_prefix_unavailable()
        if reason is None:
            probe = shared_prefix.probe(int(self.policy.get_input_embeddings().weight.shape[0]))
            results = [self._probe_logprobs(probe, shared_prefix=shared) for shared in (False, True)]
            tol = 2e-2 if self._autocast_dtype is not None else 1e-4
            if not torch.allclose(*results, rtol=tol, atol=tol):
                reason = "on a probe batch it did not reproduce the plain layout's log-probs"
        if reason is not None and mode is True:
            raise SkyrlError(
                f"[strategy] shared_prefix = true: {reason}; set [strategy] shared_prefix = 'auto' (used where it "
                "applies) or false"
            )
        return reason is None

    def _shared_prefix_unavailable(self) -> str | None:
        """Why the shared-prompt layout cannot run on this strategy's models, or None."""
        if self.config.packing:
            return "[strategy] packing lays several sequences into a row, which the shared layout does not"
        if self.checkpointing.on:
            return (
                "gradient checkpointing is on (Hugging Face layers drop the key/value cache while they checkpoint; "
                "trainer.gradient_checkpointing = false turns it off)"
            )
        if self.logits_mode != "sliced":
            return "it needs the LM head applied to hidden states ([strategy] logits resolved to 'full')"
        reason = shared_prefix.unsupported_reason(model_parts.backbone(self.policy))
        if reason is None and self._critic is not None:
            reason = shared_prefix.unsupported_reason(self._require_critic().backbone)
        return reason

    def _compile(self, *, strict: bool) -> bool:
        """``[strategy] compile``: compile the transformer blocks of every model, then run a training
        forward and backward of the policy on a probe batch (in the layout training uses) and check that
        it gives the eager log-probs: a compiler problem shows at start-up, not mid-run. With ``strict``
        (``compile = true``) it is an error; with ``"auto"`` the models go back to eager, with a notice.
        Returns whether the blocks stay compiled."""
        probe = shared_prefix.probe(int(self.policy.get_input_embeddings().weight.shape[0]))
        c = self._collate(probe)
        # Train mode (what the update compiles for) unless dropout stays on: then eval, deterministic.
        self.policy.train(self.config.disable_dropout)

        def logprobs() -> Tensor:
            with self._autocast():
                logits = self._policy_logits(c, mode=self.logits_mode)
                return token_outputs.logprob_outputs(logits, c.targets, 1.0, False)["logprobs"]

        with torch.no_grad():
            eager = logprobs()
        modules = [m for m in (self.policy, self.ref, self._critic.module if self._critic is not None else None)
                   if m is not None]
        compiled = [model_parts.compile_blocks(m) for m in modules]
        problem: str | None = None
        cause: BaseException | None = None
        if not compiled[0]:
            problem = f"{type(self.policy).__name__} names no transformer blocks (_no_split_modules) to compile"
        else:
            try:
                out = logprobs()
                out.sum().backward()
            except Exception as exc:  # whatever the compiler raised: say where, keep the cause
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                problem = (f"torch.compile failed on a probe batch ({type(exc).__name__}: {first}); on the CPU it "
                           "needs a C++ compiler, on CUDA Triton")
                cause = exc
            finally:
                self.policy.zero_grad(set_to_none=True)
            tol = 2e-2 if self._autocast_dtype is not None else 1e-4
            if problem is None and not torch.allclose(out.detach().float(), eager.float(), rtol=tol, atol=tol):
                problem = "the compiled model's log-probs differ from the eager model's on a probe batch"
        if problem is None:
            return True
        if strict:
            raise SkyrlError(f"[strategy] compile = true: {problem}; set [strategy] compile = false") from cause
        for m in modules:
            model_parts.uncompile_blocks(m)
        print(f"local: [strategy] compile auto: off, eager layers: {problem} (set compile = false to skip the "
              "attempt)", flush=True)
        return False

    # -- passes -----------------------------------------------------------------------------

    def _micro_batches(self, lengths: list[int], budget: int) -> list[list[int]]:
        """Indices of each micro-batch, in the configured layout (padded or packed)."""
        cfg = self.config
        return pack_by_token_budget(
            lengths, budget, sort=cfg.sort_micro_batches, packed=cfg.packing, row_width=cfg.packing_width
        )

    def _collate(self, micro: TrainBatch) -> Collated:
        cfg = self.config
        return collate(
            micro, self.device, packed=cfg.packing, row_width=cfg.packing_width, shared_prefix=self.prefix_sharing
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _keep_casts(self) -> contextlib.AbstractContextManager:
        """A disabled autocast region around a step's passes: autocast drops its cast weights only when
        the outermost region exits, so each weight is cast once per step instead of per micro-batch."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=False)

    def _policy_logits(self, c: Collated, *, mode: str, module: nn.Module | None = None) -> Tensor:
        """Logits ``(N, V)`` at the positions that predict the ``N`` response tokens."""
        module = self.policy if module is None else module
        if c.prefix is not None:  # only ever built when the mode is 'sliced' (``_choose_shared_prefix``)
            return shared_prefix.response_logits(module, c.prefix)
        return model_parts.response_logits(module, c.model_inputs(), c.rows, c.cols, sliced=mode == "sliced")

    def _outputs(self, role: ModelRole, c: Collated, temperature: float, need_entropy: bool) -> dict[str, Tensor]:
        """Per-token outputs ``(N,)`` of ``role`` on a collated micro-batch."""
        if role == "critic":
            critic = self._require_critic()
            if c.prefix is not None:
                return {"values": shared_prefix.response_values(critic, c.prefix)}
            return {"values": model_parts.response_values(critic, c.model_inputs(), c.rows, c.cols)}
        module = self.policy if role == "policy" else self._require_ref()
        with self._ref_context() if role == "ref" else contextlib.nullcontext():
            logits = self._policy_logits(c, mode=self.logits_mode, module=module)
        # One fused pass for both on CUDA (Triton); the chunked torch ops elsewhere.
        return token_outputs.logprob_outputs(logits, c.targets, temperature, need_entropy)

    @torch.no_grad()
    def forward(
        self, batch: TrainBatch, *, role: ModelRole = "policy", temperature: float = 1.0, need_entropy: bool = False
    ) -> ForwardOutput:
        """No-grad pass over ``batch`` in micro-batches.

        Returns:
            For ``policy``/``ref``: ``logprobs`` ``(B, R)`` of each response token given
            everything before it, with logits divided by ``temperature`` (0 means greedy
            sampling and uses 1), and ``entropy`` ``(B, R)`` when asked. For ``critic``:
            ``values`` ``(B, R)``, the value of the state before each response token.
            Float32 CPU tensors, 0 past each response's end.
        """
        self._check_onloaded()
        temperature = token_outputs.effective_temperature(temperature)
        module = self._module(role)
        module.eval()
        names = token_outputs.output_names(role, need_entropy)
        results = token_outputs.empty_results(len(batch), batch.response_len, names)
        budget = self.config.forward_micro_batch_tokens or self.trainer.micro_batch_tokens
        lengths = [batch.seq_len(i) for i in range(len(batch))]
        for idx in self._micro_batches(lengths, budget):
            micro = TrainBatch([batch.prompt_ids[i] for i in idx], [batch.response_ids[i] for i in idx])
            c = self._collate(micro)
            if c.targets.numel() == 0:
                continue
            with self._autocast():
                per_token = self._outputs(role, c, temperature, need_entropy)
            token_outputs.place(results, idx, c, per_token)
        return ForwardOutput(**results)

    def train_step(
        self,
        batch: TrainBatch,
        loss_fn: LossFn,
        *,
        role: ModelRole = "policy",
        temperature: float = 1.0,
        need_entropy: bool = False,
    ) -> dict[str, float]:
        """One optimizer step of ``role`` (``policy`` or ``critic``) over the mini-batch ``batch``.

        The shared step of ``skyrl_core.strategies.update``: each micro-batch's loss (already
        scaled by the mini-batch totals) is back-propagated; the optimizer steps once after
        clipping. A non-finite loss or gradient norm skips the step (gradients dropped,
        ``skipped = 1``) when ``trainer.skip_nan``, and raises ``FloatingPointError`` otherwise.
        The LR schedule advances with every step that does not raise, so it stays aligned with
        the loop's planned step count.

        Returns:
            The loss function's metrics averaged over micro-batches weighted by their
            ``loss_mask`` tokens, plus ``grad_norm``, ``lr``, ``skipped``, ``micro_batches``,
            ``tokens`` (prompt + response tokens), ``fwd_bwd_s`` and ``optimizer_s``. For the
            critic, keys without a ``/`` get a ``critic/`` prefix (``critic/grad_norm``, ...).
        """
        self._check_onloaded()
        if role == "ref":
            raise ValueError("train_step(role='ref'): the reference model is frozen; train 'policy' or 'critic'")
        trained = self._critic_trainable() if role == "critic" else self._policy
        temperature = token_outputs.effective_temperature(temperature)
        trained.module.train()
        lengths = [batch.seq_len(i) for i in range(len(batch))]
        groups = self._micro_batches(lengths, self.trainer.micro_batch_tokens)

        def score(micro: update.MicroBatch) -> ForwardOutput | None:
            c = self._collate(micro.batch)
            if c.targets.numel() == 0:
                return None
            return token_outputs.scattered(c, self._outputs(role, c, temperature, need_entropy))

        micro_batches = (update.MicroBatch(to_device(batch.select(idx), self.device)) for idx in groups)
        scale = loss_scale(batch)
        acc = update.accumulate(
            trained, micro_batches, score, loss_fn, scale, autocast=self._autocast, keep_casts=self._keep_casts,
            where=f"of {len(groups)}",
        )
        t = self.trainer
        outcome = update.step_optimizer(trained, acc.bad, grad_clip=t.grad_clip, skip_nan=t.skip_nan)
        if not outcome.stepped_schedule:
            raise update.non_finite_error(role, outcome.bad)
        if role == "policy":
            self.optimizer_steps += 1
        return update.step_metrics([acc], [outcome], micro_batches=len(groups), tokens=sum(lengths), role=role)

    # -- weights ----------------------------------------------------------------------------

    def named_weights(self, bucket_bytes: int = 1 << 28) -> Iterator[list[tuple[str, Tensor]]]:
        """The policy's weights under their Hugging Face names, in buckets of about ``bucket_bytes``.

        Tensors are detached views of the fp32 master weights on the strategy's device (or
        in host memory while offloaded); receivers cast as they need. Tied weights come
        once, under the first name of the state dict: with tied embeddings that is
        ``model.embed_tokens.weight`` and ``lm_head.weight`` is left out, as
        ``save_pretrained`` does. With LoRA these are the merged weights (base + adapter
        delta, new tensors in the base's dtype) under the base model's names.
        """
        bucket: list[tuple[str, Tensor]] = []
        size = 0
        source = lora.merged_weights(self.policy) if self.peft is not None else model_parts.unique_state(self.policy)
        for name, tensor in source:
            bucket.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= bucket_bytes:
                yield bucket
                bucket, size = [], 0
        if bucket:
            yield bucket

    def reset_ref(self) -> None:
        """Make the reference model a copy of the current policy (e.g. after a warm start;
        ``[algorithm.kl] update_ref_every_epoch``).

        With LoRA the reference is the base model, so the adapters are folded into the base
        weights and restart from zero (with fresh optimizer moments); a reference of its own
        (``[model] ref_path``) gets the merged weights instead."""
        ref = self._require_ref()
        if ref is self.policy:  # LoRA without a reference of its own
            lora.fold_into_base(self.policy)
            self._policy.optimizer.state.clear()
            return
        model_parts.copy_into_reference(self._policy_state(), ref)

    def _policy_state(self) -> dict[str, Tensor]:
        """The policy's state under every Hugging Face name (with LoRA: merged, and a tied tensor also
        under its second name, e.g. ``lm_head.weight``)."""
        if self.peft is None:
            return self.policy.state_dict(keep_vars=True)
        merged = dict(lora.merged_weights(self.policy))
        first: dict[int, str] = {}
        for name, tensor in lora.hf_model(self.policy).state_dict(keep_vars=True).items():
            original = first.setdefault(id(tensor), name)
            if original != name and original in merged:
                merged[name] = merged[original]
        return merged

    def lora_config(self) -> Any:
        """``[model.lora]`` when this strategy trains adapters, else None (``TrainsLoraAdapters``)."""
        return self.model_config.lora if self.peft is not None else None

    def lora_adapter(self) -> lora.LoraAdapter:
        """The trained adapter, for engines that load LoRA adapters (``[model.lora] sync``)."""
        if self.peft is None:
            raise ValueError("lora_adapter(): this strategy trains without LoRA ([model.lora] rank = 0)")
        self._adapter_version += 1
        return lora.adapter_payload(self.peft, self._adapter_version)

    # -- checkpoints and export -------------------------------------------------------------

    def save_checkpoint(self, path: Path) -> None:
        """Write weights (safetensors), optimizer, schedule, scaler and RNG states into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.peft is not None:  # the base is the model folder itself: only what trains is saved
            lora.save_adapter_file(self.peft, path / lora.ADAPTER_WEIGHTS)
        else:
            safetensors.torch.save_model(self.policy, str(path / POLICY_WEIGHTS))
        _save_trainable_state(self._policy, path, POLICY_OPTIMIZER, POLICY_SCHEDULER)
        if self.ref is not None:
            safetensors.torch.save_model(self.ref, str(path / REF_WEIGHTS))
        if self._critic is not None:
            if self.peft is not None:  # its adapters and value head
                lora.save_trainable_file(self._critic.module, path / lora.CRITIC_TRAINABLE)
            else:
                safetensors.torch.save_model(self._critic.module, str(path / CRITIC_WEIGHTS))
            _save_trainable_state(self._critic, path, CRITIC_OPTIMIZER, CRITIC_SCHEDULER)
        torch.save(rng_state(), path / RNG_STATE)
        meta = {
            "strategy": "local",
            "optimizer_steps": self.optimizer_steps,
            "has_ref": self.ref is not None,
            "has_critic": self._critic is not None,
            "dtype": self.model_config.dtype,
        }
        if self.peft is not None:
            meta["lora"] = lora.describe(self.model_config.lora)
        (path / STRATEGY_STATE).write_text(json.dumps(meta, indent=2) + "\n")

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything ``save_checkpoint`` wrote (training continues exactly)."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} is not a directory; point checkpoint.resume at one")
        self.onload()
        # Check every file first, so that a bad checkpoint leaves the strategy as it was.
        meta_file = path / STRATEGY_STATE
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        if meta_file.is_file():
            lora.check_checkpoint(meta, self.model_config.lora, path)
        weights, critic_weights = (POLICY_WEIGHTS, "policy weights"), (CRITIC_WEIGHTS, "critic weights")
        if self.peft is not None:
            weights, critic_weights = (lora.ADAPTER_WEIGHTS, "LoRA adapter"), (lora.CRITIC_TRAINABLE, "critic weights")
        required = [
            weights,
            (POLICY_OPTIMIZER, "optimizer state"),
            (POLICY_SCHEDULER, "LR schedule"),
            (RNG_STATE, "RNG states"),
        ]
        if self._critic is not None:
            required += [
                critic_weights,
                (CRITIC_OPTIMIZER, "critic optimizer state"),
                (CRITIC_SCHEDULER, "critic LR schedule"),
            ]
        require_files(path, required)
        device = str(self.device)
        if self.peft is not None:
            lora.load_adapter_file(self.peft, path / lora.ADAPTER_WEIGHTS)
        else:
            safetensors.torch.load_model(self.policy, str(path / POLICY_WEIGHTS), device=device)
        _load_trainable_state(self._policy, path, POLICY_OPTIMIZER, POLICY_SCHEDULER, self.device)
        if self.ref is not None and (path / REF_WEIGHTS).is_file():
            safetensors.torch.load_model(self.ref, str(path / REF_WEIGHTS), device=device)
        if self._critic is not None:
            if self.peft is not None:
                lora.load_trainable_file(self._critic.module, path / lora.CRITIC_TRAINABLE)
            else:
                safetensors.torch.load_model(self._critic.module, str(path / CRITIC_WEIGHTS), device=device)
            _load_trainable_state(self._critic, path, CRITIC_OPTIMIZER, CRITIC_SCHEDULER, self.device)
        set_rng_state(torch.load(path / RNG_STATE))
        self.optimizer_steps = int(meta.get("optimizer_steps", 0))

    def export_hf(self, path: Path, tokenizer: Any) -> None:
        """Write a Hugging Face model folder (weights in ``model.dtype``, plus the tokenizer) to ``path``.

        Written to a temporary sibling directory and renamed into place, replacing an
        existing ``path`` only once the new folder is complete. With LoRA, ``[model.lora]
        export`` picks a merged model folder (the default) or the adapter in peft's format.
        """
        if self.peft is not None:
            if self.model_config.lora.export == "adapter":
                lora.export_adapter(self.peft, path, tokenizer)
            else:
                lora.export_merged(self.policy, path, tokenizer, dtype=self.model_config.dtype)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        dtype = self.model_config.dtype
        # Tied weights once (copies would no longer share storage and be saved twice).
        state = {k: v.to("cpu", getattr(torch, dtype)) for k, v in model_parts.unique_state(self.policy)}
        try:
            self.policy.save_pretrained(tmp, state_dict=state)  # empties ``state``
            # save_pretrained records the fp32 master weights' dtype; the files hold ``dtype``.
            config_file = tmp / "config.json"
            config = json.loads(config_file.read_text())
            config["dtype"] = dtype
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            replace_dir(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- placement --------------------------------------------------------------------------

    def offload(self) -> None:
        """Move models and optimizer states to pinned CPU memory (no-op when training on CPU)."""
        if self.device.type == "cpu" or self._offloaded:
            return
        self._offloader.offload(*self._placed())
        self._offloaded = True
        torch.cuda.empty_cache()

    def onload(self) -> None:
        """Move models and optimizer states back to the training device."""
        if not self._offloaded:
            return
        self._offloader.onload(*self._placed(), self.device)
        self._offloaded = False

    def _placed(self) -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
        trained = [t for t in (self._policy, self._critic) if t is not None]
        modules = [t.module for t in trained] + ([self.ref] if self.ref is not None else [])
        return modules, [t.optimizer for t in trained]

    # -- small helpers ----------------------------------------------------------------------

    def _check_onloaded(self) -> None:
        if self._offloaded:
            raise RuntimeError("the local strategy is offloaded to CPU; call onload() before using it")

    def _module(self, role: ModelRole) -> nn.Module:
        if role == "policy":
            return self.policy
        if role == "ref":
            return self._require_ref()
        if role == "critic":
            return self._require_critic()
        raise ValueError(f"role {role!r}: expected 'policy', 'ref' or 'critic'")

    def _require_ref(self) -> nn.Module:
        if self.ref is not None:
            return self.ref
        if self.need_ref and self.peft is not None:
            return self.policy  # run with its adapters disabled (``_ref_context``)
        raise ValueError("role='ref' but the strategy was built without a reference model (need_ref=False)")

    def _ref_context(self) -> contextlib.AbstractContextManager:
        """With LoRA and no reference of its own, the reference pass runs the base model: adapters disabled."""
        if self.peft is not None and self.ref is None:
            return lora.adapters_disabled(self.peft)
        return contextlib.nullcontext()

    def _critic_trainable(self) -> Trainable:
        if self._critic is None:
            raise ValueError("role='critic' but the strategy was built without a critic (need_critic=False)")
        return self._critic

    def _require_critic(self) -> model_parts.ValueModel:
        return self._critic_trainable().module  # type: ignore[return-value]


# -- module-level helpers ---------------------------------------------------------------------


def _save_trainable_state(trained: Trainable, path: Path, optimizer_file: str, scheduler_file: str) -> None:
    torch.save(trained.optimizer.state_dict(), path / optimizer_file)
    torch.save(trained.scheduler.state_dict(), path / scheduler_file)
    if trained.scaler is not None:
        torch.save(trained.scaler.state_dict(), path / (Path(optimizer_file).stem + "_" + GRAD_SCALER))


def _load_trainable_state(
    trained: Trainable, path: Path, optimizer_file: str, scheduler_file: str, device: torch.device
) -> None:
    trained.optimizer.load_state_dict(torch.load(path / optimizer_file, map_location=device))
    trained.scheduler.load_state_dict(torch.load(path / scheduler_file))
    if trained.scaler is not None:
        scaler_file = path / (Path(optimizer_file).stem + "_" + GRAD_SCALER)
        if scaler_file.is_file():
            trained.scaler.load_state_dict(torch.load(scaler_file))

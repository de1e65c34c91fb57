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

Every pass right-pads ``prompt + response`` into micro-batches packed by token budget and
scores response token ``j`` from the hidden state at ``prompt_len - 1 + j``; by default the
LM head runs only at those positions (see ``LocalStrategyConfig.logits``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.ops.fused_logprobs import logprobs_and_entropy
from skyrl_core.protocols.strategy import ForwardOutput, LossFn, ModelRole, TrainBatch
from skyrl_core.strategies import common, lora, lora_sync
from skyrl_core.strategies.local_config import LocalStrategyConfig

_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class _Trainable:
    """One trained module with its optimizer, schedule and (fp16 only) gradient scaler."""

    def __init__(self, module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any) -> None:
        self.module = module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.params = [p for p in module.parameters() if p.requires_grad]


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
        from skyrl_core.models.loading import load_causal_lm, resolve_device

        self.config = config if config is not None else LocalStrategyConfig()
        self.model_config = model
        self.trainer = trainer
        common.check_packing_width(self.config, trainer)
        self.seed = seed
        self.total_optimizer_steps = max(1, int(total_optimizer_steps))
        self.device = resolve_device(model.device)
        self._autocast_dtype = _AUTOCAST_DTYPES.get(model.dtype)
        self._offloaded = False
        self._offloader = common.HostOffloader()
        self.optimizer_steps = 0

        # A LoRA base is frozen: it needs no fp32 master copy, so it stays in [model] dtype.
        base_dtype = getattr(torch, model.dtype) if lora.enabled(model) else torch.float32
        policy = load_causal_lm(model, device=self.device, dtype=base_dtype)
        self.peft = None
        if lora.enabled(model):
            self.peft = lora.apply(policy, model.lora, base_path=str(model.path), seed=seed)
        if self.config.disable_dropout:
            common.disable_dropout(policy)
            if self.peft is not None:
                lora.set_adapter_dropout(policy, model.lora.dropout)  # the user's explicit choice stays
        self.policy = policy  # with LoRA: the same module, adapters injected
        self.need_ref = need_ref
        self.ref: nn.Module | None = None
        if need_ref and self.peft is None:
            self.ref = copy.deepcopy(policy).eval().requires_grad_(False)
        self._adapter_version = 0
        critic: common.ValueModel | None = None
        if need_critic:
            body = common.backbone(policy)
            if body is None:
                raise SkyrlError(
                    f"[model] path = {model.path!r}: {type(policy).__name__} exposes no transformer body "
                    "(base_model), so the local strategy cannot build a critic from it; turn the critic off "
                    "(use an estimator other than 'gae')"
                )
            generator = torch.Generator().manual_seed(seed)
            critic = common.ValueModel(copy.deepcopy(body), common.hidden_size(policy), generator)
            critic.to(self.device)
        if trainer.gradient_checkpointing:
            common.enable_checkpointing(policy)
            if critic is not None:
                common.enable_checkpointing(critic.backbone)
            if self.peft is not None:
                lora.enable_input_grads(policy)

        self.logits_mode = self._choose_logits_mode()
        if self.config.packing:
            self._check_packing()
        self._policy = self._trainable(policy, trainer.lr)
        self._critic = None
        if critic is not None:
            self._critic = self._trainable(critic, self.config.critic_lr or trainer.lr)

    # -- construction helpers ---------------------------------------------------------------

    def _trainable(self, module: nn.Module, lr: float) -> _Trainable:
        t = self.trainer
        optimizer = common.build_adamw(
            (p for p in module.parameters() if p.requires_grad),
            lr=lr,
            betas=t.betas,
            weight_decay=t.weight_decay,
            device=self.device,
        )
        scheduler = common.build_scheduler(
            optimizer, schedule=t.lr_schedule, warmup_steps=t.warmup_steps, total_steps=self.total_optimizer_steps
        )
        scaler = torch.amp.GradScaler(self.device.type) if self._autocast_dtype is torch.float16 else None
        return _Trainable(module, optimizer, scheduler, scaler)

    @torch.no_grad()
    def _choose_logits_mode(self) -> str:
        """'sliced' when the LM head on gathered hidden states reproduces the model's logits."""
        mode = self.config.logits
        has_parts = common.backbone(self.policy) is not None and self.policy.get_output_embeddings() is not None
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
        probe = TrainBatch([[1, 2, 3], [4 % vocab]], [[5 % vocab, 6 % vocab], [7 % vocab, 8 % vocab, 9 % vocab]])
        c = common.collate(probe, self.device)
        self.policy.eval()
        sliced = self._policy_logits(c, mode="sliced")
        full = self._policy_logits(c, mode="full")
        ok = torch.allclose(sliced.float(), full.float(), rtol=1e-4, atol=1e-4)
        return "sliced" if ok else "full"

    @torch.no_grad()
    def _check_packing(self) -> None:
        """``packing = true``: packed rows must give the padded rows' log-probs (the model's
        attention must keep packed sequences apart), else a clear error at start-up."""
        probe = common.packing_probe(int(self.policy.get_input_embeddings().weight.shape[0]))
        self.policy.eval()
        results = []
        for packed in (False, True):
            c = common.collate(probe, self.device, packed=packed)
            with self._autocast():
                logits = self._policy_logits(c, mode=self.logits_mode)
            results.append(c.scatter(logprobs_and_entropy(logits, c.targets, 1.0, False)[0]))
        if not common.packing_agrees(*results, low_precision=self._autocast_dtype is not None):
            raise common.packing_error(self.policy)

    # -- passes -----------------------------------------------------------------------------

    def _micro_batches(self, lengths: list[int], budget: int) -> list[list[int]]:
        """Indices of each micro-batch, in the configured layout (padded or packed)."""
        cfg = self.config
        return common.pack_by_token_budget(
            lengths, budget, sort=cfg.sort_micro_batches, packed=cfg.packing, row_width=cfg.packing_width
        )

    def _collate(self, micro: TrainBatch) -> common.Collated:
        return common.collate(micro, self.device, packed=self.config.packing, row_width=self.config.packing_width)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def _policy_logits(self, c: common.Collated, *, mode: str, module: nn.Module | None = None) -> Tensor:
        """Logits ``(N, V)`` at the positions that predict the ``N`` response tokens."""
        module = self.policy if module is None else module
        inputs = c.model_inputs()
        if mode == "full":
            return module(**inputs, use_cache=False).logits[c.rows, c.cols]
        hidden = common.backbone(module)(**inputs, use_cache=False).last_hidden_state
        return module.get_output_embeddings()(hidden[c.rows, c.cols])

    def _outputs(
        self, role: ModelRole, c: common.Collated, temperature: float, need_entropy: bool
    ) -> dict[str, Tensor]:
        """Per-token outputs ``(N,)`` of ``role`` on a collated micro-batch."""
        if role == "critic":
            critic = self._require_critic()
            body = critic.backbone
            hidden = body(**c.model_inputs(), use_cache=False).last_hidden_state
            return {"values": critic.head(hidden[c.rows, c.cols]).squeeze(-1).float()}
        module = self.policy if role == "policy" else self._require_ref()
        with self._ref_context() if role == "ref" else contextlib.nullcontext():
            logits = self._policy_logits(c, mode=self.logits_mode, module=module)
        # One fused pass for both on CUDA (Triton); the chunked torch ops elsewhere.
        logprobs, entropy = logprobs_and_entropy(logits, c.targets, temperature, need_entropy)
        out = {"logprobs": logprobs}
        if entropy is not None:
            out["entropy"] = entropy
        return out

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
        temperature = _effective_temperature(temperature)
        module = self._module(role)
        module.eval()
        names = ["values"] if role == "critic" else ["logprobs", *(["entropy"] if need_entropy else [])]
        results = {n: torch.zeros(len(batch), batch.response_len, dtype=torch.float32) for n in names}
        budget = self.config.forward_micro_batch_tokens or self.trainer.micro_batch_tokens
        lengths = [batch.seq_len(i) for i in range(len(batch))]
        for idx in self._micro_batches(lengths, budget):
            micro = TrainBatch([batch.prompt_ids[i] for i in idx], [batch.response_ids[i] for i in idx])
            c = self._collate(micro)
            if c.targets.numel() == 0:
                continue
            with self._autocast():
                per_token = self._outputs(role, c, temperature, need_entropy)
            index = torch.tensor(idx, dtype=torch.long)
            for name in names:
                block = c.scatter(per_token[name]).cpu()
                results[name][index, : block.shape[1]] = block
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

        Each micro-batch's loss (already scaled by the mini-batch totals) is back-propagated;
        the optimizer steps once after clipping. A non-finite loss or gradient norm skips
        the step (gradients dropped, ``skipped = 1``) when ``trainer.skip_nan``, and raises
        ``FloatingPointError`` otherwise. The LR schedule advances either way, so it stays
        aligned with the loop's planned step count.

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
        temperature = _effective_temperature(temperature)
        trained.module.train()
        scale = common.loss_scale(batch)
        lengths = [batch.seq_len(i) for i in range(len(batch))]
        groups = self._micro_batches(lengths, self.trainer.micro_batch_tokens)
        trained.optimizer.zero_grad(set_to_none=True)

        start = time.perf_counter()
        sums: dict[str, float] = {}
        plain: dict[str, float] = {}
        weight_total = 0.0
        bad_loss: str | None = None
        for k, idx in enumerate(groups):
            micro = common.to_device(batch.select(idx), self.device)
            c = self._collate(micro)
            if c.targets.numel() == 0:
                continue  # only empty responses: nothing to score, nothing to learn
            with self._autocast():
                per_token = self._outputs(role, c, temperature, need_entropy)
                out = ForwardOutput(**{name: c.scatter(v) for name, v in per_token.items()})
                loss, metrics = loss_fn(micro, out, scale)
            if not bool(torch.isfinite(loss.detach()).all()):
                bad_loss = f"micro-batch {k} of {len(groups)} has loss {float(loss.detach())}"
                break
            (trained.scaler.scale(loss) if trained.scaler is not None else loss).backward()
            weight = float(micro.tensors["loss_mask"].sum())
            weight_total += weight
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0.0) + float(value) * weight
                plain[name] = plain.get(name, 0.0) + float(value)
        fwd_bwd_s = time.perf_counter() - start

        start = time.perf_counter()
        lr = float(trained.optimizer.param_groups[0]["lr"])
        grad_norm = float("nan")
        skipped = bad_loss is not None
        if not skipped:
            if trained.scaler is not None:
                trained.scaler.unscale_(trained.optimizer)
            max_norm = self.trainer.grad_clip if self.trainer.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(trained.params, max_norm))
            if trained.scaler is not None:
                # fp16: the scaler skips steps whose gradients overflowed and lowers its scale.
                trained.scaler.step(trained.optimizer)
                trained.scaler.update()
                skipped = not math.isfinite(grad_norm)
            elif math.isfinite(grad_norm):
                trained.optimizer.step()
            else:
                skipped = True
                bad_loss = f"gradient norm is {grad_norm}"
        trained.optimizer.zero_grad(set_to_none=True)
        if bad_loss is not None and not self.trainer.skip_nan:
            raise FloatingPointError(
                f"{role} train step: {bad_loss}. Lower trainer.lr, check the loss inputs (advantages, log-probs), "
                "or set trainer.skip_nan = true to skip and report such steps"
            )
        with warnings.catch_warnings():
            # A skipped step never called optimizer.step(); torch warns about the order then.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            trained.scheduler.step()
        if role == "policy":
            self.optimizer_steps += 1

        n = len(groups)
        if weight_total > 0:
            result = {name: value / weight_total for name, value in sums.items()}
        else:
            result = {name: value / max(n, 1) for name, value in plain.items()}
        result.update(
            grad_norm=grad_norm,
            lr=lr,
            skipped=1.0 if skipped else 0.0,
            micro_batches=float(n),
            tokens=float(sum(lengths)),
            fwd_bwd_s=fwd_bwd_s,
            optimizer_s=time.perf_counter() - start,
        )
        if role == "critic":
            # Callers merge policy and critic metrics of one mini-batch into one dict.
            result = {k if "/" in k else f"critic/{k}": v for k, v in result.items()}
        return result

    def sft_loss_fn(self) -> LossFn:
        """Cross-entropy on ``loss_mask`` tokens (see ``common.sft_loss_fn``), for ``skyrl sft``."""
        return common.sft_loss_fn()

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
        source = lora.merged_weights(self.policy) if self.peft is not None else common.unique_state(self.policy)
        for name, tensor in source:
            bucket.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= bucket_bytes:
                yield bucket
                bucket, size = [], 0
        if bucket:
            yield bucket

    def reset_ref(self) -> None:
        """Make the reference model a copy of the current policy (e.g. after a warm start).

        With LoRA the reference is the base model, so the adapters are folded into the base
        weights and restart from zero (with fresh optimizer moments)."""
        ref = self._require_ref()
        if self.peft is not None:
            lora.fold_into_base(self.policy)
            self._policy.optimizer.state.clear()
            return
        with torch.no_grad():
            ref.load_state_dict(self.policy.state_dict())

    def lora_adapter(self) -> lora_sync.LoraAdapter:
        """The trained adapter, for engines that load LoRA adapters (``[model.lora] sync``)."""
        if self.peft is None:
            raise ValueError("lora_adapter(): this strategy trains without LoRA ([model.lora] rank = 0)")
        self._adapter_version += 1
        return lora_sync.adapter_payload(self.peft, self._adapter_version)

    # -- checkpoints and export -------------------------------------------------------------

    def save_checkpoint(self, path: Path) -> None:
        """Write weights (safetensors), optimizer, schedule, scaler and RNG states into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.peft is not None:  # the base is the model folder itself: only what trains is saved
            lora.save_adapter_file(self.peft, path / lora.ADAPTER_WEIGHTS)
        else:
            safetensors.torch.save_model(self.policy, str(path / common.POLICY_WEIGHTS))
        _save_trainable_state(self._policy, path, common.POLICY_OPTIMIZER, common.POLICY_SCHEDULER)
        if self.ref is not None:
            safetensors.torch.save_model(self.ref, str(path / common.REF_WEIGHTS))
        if self._critic is not None:
            if self.peft is not None:  # its adapters and value head
                lora.save_trainable_file(self._critic.module, path / lora.CRITIC_TRAINABLE)
            else:
                safetensors.torch.save_model(self._critic.module, str(path / common.CRITIC_WEIGHTS))
            _save_trainable_state(self._critic, path, common.CRITIC_OPTIMIZER, common.CRITIC_SCHEDULER)
        torch.save(common.rng_state(), path / common.RNG_STATE)
        meta = {
            "strategy": "local",
            "optimizer_steps": self.optimizer_steps,
            "has_ref": self.ref is not None,
            "has_critic": self._critic is not None,
            "dtype": self.model_config.dtype,
        }
        if self.peft is not None:
            meta["lora"] = lora.describe(self.model_config.lora)
        (path / common.STRATEGY_STATE).write_text(json.dumps(meta, indent=2) + "\n")

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything ``save_checkpoint`` wrote (training continues exactly)."""
        path = Path(path)
        if not path.is_dir():
            raise common.CheckpointError(f"checkpoint {path} is not a directory; point checkpoint.resume at one")
        self.onload()
        # Check every file first, so that a bad checkpoint leaves the strategy as it was.
        meta_file = path / common.STRATEGY_STATE
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        if meta_file.is_file():
            lora.check_checkpoint(meta, self.model_config.lora, path)
        weights, critic_weights = (common.POLICY_WEIGHTS, "policy weights"), (common.CRITIC_WEIGHTS, "critic weights")
        if self.peft is not None:
            weights, critic_weights = (lora.ADAPTER_WEIGHTS, "LoRA adapter"), (lora.CRITIC_TRAINABLE, "critic weights")
        required = [
            weights,
            (common.POLICY_OPTIMIZER, "optimizer state"),
            (common.POLICY_SCHEDULER, "LR schedule"),
            (common.RNG_STATE, "RNG states"),
        ]
        if self._critic is not None:
            required += [
                critic_weights,
                (common.CRITIC_OPTIMIZER, "critic optimizer state"),
                (common.CRITIC_SCHEDULER, "critic LR schedule"),
            ]
        common.require_files(path, required)
        device = str(self.device)
        if self.peft is not None:
            lora.load_adapter_file(self.peft, path / lora.ADAPTER_WEIGHTS)
        else:
            safetensors.torch.load_model(self.policy, str(path / common.POLICY_WEIGHTS), device=device)
        _load_trainable_state(self._policy, path, common.POLICY_OPTIMIZER, common.POLICY_SCHEDULER, self.device)
        if self.ref is not None and (path / common.REF_WEIGHTS).is_file():
            safetensors.torch.load_model(self.ref, str(path / common.REF_WEIGHTS), device=device)
        if self._critic is not None:
            if self.peft is not None:
                lora.load_trainable_file(self._critic.module, path / lora.CRITIC_TRAINABLE)
            else:
                safetensors.torch.load_model(self._critic.module, str(path / common.CRITIC_WEIGHTS), device=device)
            _load_trainable_state(self._critic, path, common.CRITIC_OPTIMIZER, common.CRITIC_SCHEDULER, self.device)
        common.set_rng_state(torch.load(path / common.RNG_STATE))
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
        state = {k: v.to("cpu", getattr(torch, dtype)) for k, v in common.unique_state(self.policy)}
        try:
            self.policy.save_pretrained(tmp, state_dict=state)  # empties ``state``
            # save_pretrained records the fp32 master weights' dtype; the files hold ``dtype``.
            config_file = tmp / "config.json"
            config = json.loads(config_file.read_text())
            config["dtype"] = dtype
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            common.replace_dir(tmp, path)
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
        if self.need_ref and self.peft is not None:
            return self.policy  # run with its adapters disabled (``_ref_context``)
        if self.ref is None:
            raise ValueError("role='ref' but the strategy was built without a reference model (need_ref=False)")
        return self.ref

    def _ref_context(self) -> contextlib.AbstractContextManager:
        """With LoRA, the reference pass runs the base model: adapters disabled."""
        return lora.adapters_disabled(self.peft) if self.peft is not None else contextlib.nullcontext()

    def _critic_trainable(self) -> _Trainable:
        if self._critic is None:
            raise ValueError("role='critic' but the strategy was built without a critic (need_critic=False)")
        return self._critic

    def _require_critic(self) -> common.ValueModel:
        return self._critic_trainable().module  # type: ignore[return-value]


# -- module-level helpers ---------------------------------------------------------------------


def _effective_temperature(temperature: float) -> float:
    """The divisor the sampler applied: greedy decoding (0) reports raw log-softmax."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    return 1.0 if temperature == 0 else float(temperature)


def _save_trainable_state(trained: _Trainable, path: Path, optimizer_file: str, scheduler_file: str) -> None:
    torch.save(trained.optimizer.state_dict(), path / optimizer_file)
    torch.save(trained.scheduler.state_dict(), path / scheduler_file)
    if trained.scaler is not None:
        torch.save(trained.scaler.state_dict(), path / (Path(optimizer_file).stem + "_" + common.GRAD_SCALER))


def _load_trainable_state(
    trained: _Trainable, path: Path, optimizer_file: str, scheduler_file: str, device: torch.device
) -> None:
    trained.optimizer.load_state_dict(torch.load(path / optimizer_file, map_location=device))
    trained.scheduler.load_state_dict(torch.load(path / scheduler_file))
    if trained.scaler is not None:
        scaler_file = path / (Path(optimizer_file).stem + "_" + common.GRAD_SCALER)
        if scaler_file.is_file():
            trained.scaler.load_state_dict(torch.load(scaler_file))

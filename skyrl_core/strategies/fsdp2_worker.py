"""One rank of the ``fsdp2`` strategy: a Ray actor holding its shards of the models.

The driver (``skyrl_core.strategies.fsdp2.Fsdp2Strategy``) creates one ``Fsdp2Worker`` per
GPU (or CPU worker), calls ``setup`` on all of them to form the process group and build
the sharded models, then calls the same method on every rank for each pass. Every rank
runs the same number of micro-batches (short ranks run zero-weight dummy ones), because
each forward and backward pass is a sequence of collectives all ranks must join.

A pass is ``local``'s on sharded modules: the same collation, per-token outputs
(``token_outputs``: the fused log-prob kernel on CUDA) and train step
(``skyrl_core.strategies.update``), with three things passed in: the dummy micro-batches,
an all-reduce so that a non-finite loss on any rank skips the step on all, and the gather
of the sharded gradient norm. Each rank returns its ``Accumulated`` and ``StepOutcome``;
the driver merges them with ``update.step_metrics``.

Only plain data crosses into the worker: config tables (validated again by the worker's
own config classes), batches (token id lists and tensors), and the loss function pickled
*by reference* (``losses.PolicyLossFn`` etc.: its class and the loss function are
imported here by module and name).
"""

from __future__ import annotations

import contextlib
import os
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor, nn

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.strategy import ForwardOutput, LossScale, TrainBatch
from skyrl_core.strategies import fsdp2_model as fm
from skyrl_core.strategies import lora, memory, model_parts, profiling, token_outputs, update
from skyrl_core.strategies.batch_layout import (
    Collated,
    collate,
    logits_probe,
    packing_agrees,
    packing_error,
    packing_probe,
    to_device,
)
from skyrl_core.strategies.checkpoint_files import rng_state, set_rng_state
from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig
from skyrl_core.strategies.optim import Trainable, build_trainable, fused_adamw_on_dtensor

DUMMY = TrainBatch([[0]], [[0]], {"loss_mask": torch.zeros(1, 1)})  # keeps a short rank in step
SCHEDULER_FILE = "scheduler-{role}.pt"
RNG_FILE = "rng-rank{rank}.pt"


def _structure(data: dict[str, Any], cls: type) -> Any:
    from skyrl_core.config.loader import structure

    obj, issues = structure(data, cls)
    if issues:
        raise SkyrlError(f"fsdp2 worker: {cls.__name__} options rejected: " + "; ".join(map(str, issues)))
    return obj


class Fsdp2Worker:
    """Rank ``rank`` of ``world_size`` (see the module docstring).

    Args:
        rank: this worker's rank.
        world_size: number of workers.
        spec: plain tables: ``model``, ``trainer``, ``strategy`` (the three config sections),
            and ``seed``, ``need_ref``, ``need_critic``, ``total_optimizer_steps``.
    """

    def __init__(self, rank: int, world_size: int, spec: dict[str, Any]) -> None:
        from skyrl_core.runtime.engine import set_worker_threads

        set_worker_threads()
        self.rank = rank
        self.world_size = world_size
        self.spec = spec
        self.model_cfg: ModelConfig = _structure(spec["model"], ModelConfig)
        self.trainer: TrainerConfig = _structure(spec["trainer"], TrainerConfig)
        self.config: Fsdp2StrategyConfig = _structure(spec["strategy"], Fsdp2StrategyConfig)
        use_cuda = torch.cuda.is_available() and self.model_cfg.device != "cpu"
        self.device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
        self.param_dtype = {"bfloat16": torch.bfloat16}.get(self.model_cfg.dtype)
        self.transfer_dtype = self.param_dtype or torch.float32
        self.policy: Trainable | None = None
        self.critic: Trainable | None = None
        self.ref: nn.Module | None = None
        self._sync: Any = None
        self._ipc_keep: list[Tensor] = []
        self._offloaded = False
        self._profiler: Any = None
        self.lora = lora.enabled(self.model_cfg)  # adapters only; the reference is the policy with them off
        # 'auto' of these two: the ZeRO-3 behaviour above one GPU; at world size 1 (a shard is the whole
        # model) the parameters stay gathered for a step and gradients are reduced once per step.
        one = world_size == 1
        setting = self.config.reshard_after_forward
        self.reshard_after_forward = not one if setting == "auto" else bool(setting)
        setting = self.config.defer_gradient_sync
        self.defer_gradient_sync = one if setting == "auto" else bool(setting)
        self.peft: Any = None
        self.merged: dict[str, lora.MergedSource] | None = None

    # -- start-up ---------------------------------------------------------------------------

    def node(self) -> dict[str, Any]:
        """Node IP, pid and (for a rendezvous on this node) a free port."""
        from skyrl_core.runtime.calls import free_port, where

        return {**where(), "port": free_port()}

    def setup(self, master: str) -> dict[str, Any]:
        """Join the process group at ``master`` (``host:port`` of rank 0), build the sharded models."""
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        from skyrl_core.models.loading import load_causal_lm
        from skyrl_core.plugins import build_registry
        from skyrl_core.runtime.calls import plugin_table, where

        backend = "cpu:gloo,cuda:nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend,
            init_method=f"tcp://{master}",
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(seconds=self.config.timeout_s),
            device_id=self.device if self.device.type == "cuda" else None,
        )
        self.mesh = init_device_mesh(self.device.type, (self.world_size,))
        plugins = plugin_table(build_registry())
        self.checkpointing = self._decide_checkpointing()
        self.fused_optimizer = fused_adamw_on_dtensor(self.mesh, self.device)  # else foreach (CPU: as local)
        lm = load_causal_lm(self.model_cfg, dtype=torch.float32, device="cpu") if self.rank == 0 else None
        seed = int(self.spec["seed"])
        t = self.trainer
        if self.lora and lm is not None:  # rank 0's adapters (A drawn from the seed) are broadcast
            lora.apply(lm, self.model_cfg.lora, base_path=str(self.model_cfg.path), seed=seed)

        policy = self._build("policy", lm, seed, train=True)
        self.policy = self._trainable(policy, t.lr)
        ref_path, critic_path = self.model_cfg.ref_path, self.model_cfg.critic_path
        if self.spec["need_ref"] and ref_path is not None:  # a reference of its own, never with adapters
            ref_cfg, ref_lm = self._companion(ref_path, "ref_path")
            self.ref = self._build("ref", ref_lm, seed, train=False, model_cfg=ref_cfg, adapters=False)
        elif self.spec["need_ref"] and not self.lora:
            self.ref = self._build("ref", lm, seed, train=False)
        if self.spec["need_critic"]:
            critic_cfg, critic_lm = self.model_cfg, lm
            if critic_path is not None:
                critic_cfg, critic_lm = self._companion(critic_path, "critic_path")
                if self.lora and critic_lm is not None:  # its own adapters, drawn from the seed as the policy's
                    lora.apply(critic_lm, self.model_cfg.lora, base_path=critic_path, seed=seed)
            critic = self._build("critic", critic_lm, seed, train=True, model_cfg=critic_cfg)
            self.critic = self._trainable(critic, self.config.critic_lr or t.lr)
        del lm
        self.sliced = self._choose_sliced()
        if self.config.packing:
            self._check_packing()
        self.weights = dict(fm.unique_weights(policy))
        if self.lora:  # merged weights under the base model's names
            self.merged = lora.merged_sources(policy.lm)
            self.weights = {name: source.tensor for name, source in self.merged.items()}
        metas = [self._meta(name, tensor) for name, tensor in self.weights.items()]
        return {"plugins": plugins, "device": str(self.device), "sliced": self.sliced, "metas": metas,
                "checkpointing": attrs.asdict(self.checkpointing), "fused_optimizer": self.fused_optimizer,
                **where()}

    def _decide_checkpointing(self) -> memory.CheckpointingChoice:
        """``[trainer] gradient_checkpointing`` for this rank's share (``memory.decide_checkpointing``:
        the model's shards, gradients and AdamW moments still to come); on for every rank when any
        rank needs it."""
        import torch.distributed as dist

        skeleton = fm.meta_skeleton(self.model_cfg)
        numel = sum(p.numel() for p in skeleton.parameters()) // self.world_size
        trained_roles = 1 + int(bool(self.spec["need_critic"]))
        all_roles = trained_roles + int(bool(self.spec["need_ref"]) and not self.lora)
        optimizer = 0 if self.lora else memory.optimizer_bytes(numel) * trained_roles  # adapters: negligible
        # Gathered for the whole step (reshard_after_forward false): the full model in the compute
        # dtype; gradients kept unsharded until the last micro-batch (defer_gradient_sync): float32.
        full = numel * self.world_size
        compute = 4 if self.param_dtype is None else 2
        gathered = 0 if self.reshard_after_forward else compute * full * trained_roles
        deferred = 4 * full * trained_roles if self.defer_gradient_sync and not self.lora else 0
        choice = memory.decide_checkpointing(
            self.trainer.gradient_checkpointing,
            config=skeleton.config,
            tokens=self.trainer.micro_batch_tokens,
            device=self.device,
            compute_bytes=compute,
            pending_bytes=4 * numel * all_roles + optimizer + gathered + deferred,
        )
        agreed = torch.tensor([1.0 if choice.on else 0.0], device=self.device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
        if bool(agreed.item() > 0) != choice.on:
            return memory.CheckpointingChoice(True, choice.reason + " (on, as another rank needs it)")
        return choice

    def _companion(self, path: str, key: str) -> tuple[ModelConfig, nn.Module | None]:
        """``[model] ref_path``/``critic_path``: its config (checked on every rank against the policy's
        vocabulary, from meta skeletons) and, on rank 0, the loaded model."""
        from skyrl_core.models.loading import companion_config, load_causal_lm

        cfg = companion_config(self.model_cfg, path, key)
        model_parts.check_vocabulary(fm.meta_skeleton(self.model_cfg), fm.meta_skeleton(cfg), key)
        return cfg, load_causal_lm(cfg, dtype=torch.float32, device="cpu") if self.rank == 0 else None

    def _build(
        self,
        role: str,
        lm: nn.Module | None,
        seed: int,
        *,
        train: bool,
        model_cfg: ModelConfig | None = None,
        adapters: bool | None = None,
    ) -> nn.Module:
        """The sharded root of ``role`` from ``model_cfg`` (default: the policy's ``[model]``), with the
        run's LoRA adapters unless ``adapters`` is False."""
        model_cfg = model_cfg or self.model_cfg
        adapters = self.lora if adapters is None else adapters
        root, real = fm.build_roots(role, model_cfg, seed=seed, lm=lm)
        if adapters:  # the same adapters as rank 0's real model (the critic's body copied them)
            peft = lora.apply(fm.hf_model(root), self.model_cfg.lora, base_path=str(model_cfg.path))
            self.peft = peft if role == "policy" else self.peft
        if self.config.disable_dropout:
            model_parts.disable_dropout(root)
            if adapters:
                lora.set_adapter_dropout(root, self.model_cfg.lora.dropout)
        if train and self.checkpointing.on:
            model_parts.enable_checkpointing(fm.hf_model(root))
            if adapters:
                lora.enable_input_grads(fm.hf_model(root))
        reduce_dtype = torch.float32 if self.config.reduce_dtype == "float32" else torch.bfloat16
        fm.shard(
            root,
            mesh=self.mesh,
            param_dtype=self.param_dtype,
            reduce_dtype=reduce_dtype,
            reshard_after_forward=self.reshard_after_forward,
            prefetch_layers=self.config.prefetch_layers,
        )
        fm.materialize(root, real, self.device, self.rank)
        if not train:
            root.eval().requires_grad_(False)
        # [strategy] compile: 'auto' compiles on CUDA with Triton (model_parts.resolve_compile); without
        # blocks to compile, 'auto' stays eager (with a notice) and true is an error.
        if model_parts.resolve_compile(self.config.compile, self.device) and not model_parts.compile_blocks(
            fm.hf_model(root)
        ):
            problem = f"the {role} model names no transformer blocks (_no_split_modules) to compile"
            if self.config.compile is True:
                raise SkyrlError(f"[strategy] compile = true: {problem}; set [strategy] compile = false")
            if self.rank == 0:
                print(f"fsdp2: [strategy] compile auto: off, eager layers: {problem}", flush=True)
        return root

    def _trainable(self, root: nn.Module, lr: float) -> Trainable:
        return build_trainable(
            root,
            lr=lr,
            trainer=self.trainer,
            total_steps=int(self.spec["total_optimizer_steps"]),
            device=self.device,
            fused=self.fused_optimizer,
        )

    @torch.no_grad()
    def _choose_sliced(self) -> bool:
        """``logits = 'auto'``: sliced when it reproduces the model's own logits on a probe (all
        ranks agree, since every rank takes part in both passes)."""
        import torch.distributed as dist

        if self.config.logits != "auto":
            return self.config.logits == "sliced"
        assert self.policy is not None
        root = self.policy.module
        vocab = int(root.lm.get_output_embeddings().weight.shape[0])
        c = collate(logits_probe(vocab), self.device)
        root.eval()
        a = root(**c.model_inputs(), rows=c.rows, cols=c.cols, sliced=True).float()
        b = root(**c.model_inputs(), rows=c.rows, cols=c.cols, sliced=False).float()
        ok = torch.tensor([1.0 if torch.allclose(a, b, rtol=1e-4, atol=1e-4) else 0.0], device=self.device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() > 0)

    @torch.no_grad()
    def _check_packing(self) -> None:
        """``packing = true``: packed rows must give the padded rows' log-probs on every rank
        (the model's attention must keep packed sequences apart), else a clear error."""
        import torch.distributed as dist

        assert self.policy is not None
        root = self.policy.module
        probe = packing_probe(int(root.lm.get_input_embeddings().weight.shape[0]))
        root.eval()
        out = []
        for packed in (False, True):
            c = collate(probe, self.device, packed=packed)
            logits = root(**c.model_inputs(), rows=c.rows, cols=c.cols, sliced=self.sliced)
            out.append(c.scatter(token_outputs.logprob_outputs(logits, c.targets, 1.0, False)["logprobs"]))
        agree = packing_agrees(*out, low_precision=self.param_dtype is not None)
        ok = torch.tensor([1.0 if agree else 0.0], device=self.device)
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if ok.item() <= 0:
            raise packing_error(root.lm)

    def _meta(self, name: str, tensor: Tensor) -> Any:
        from skyrl_core.runtime.weight_sync import TensorMeta, dtype_name

        dtype = self.transfer_dtype if tensor.is_floating_point() else tensor.dtype
        return TensorMeta(name, tuple(int(d) for d in tensor.shape), dtype_name(dtype))

    # -- passes -----------------------------------------------------------------------------

    def _root(self, role: str) -> nn.Module:
        if role == "policy":
            assert self.policy is not None
            return self.policy.module
        if role == "ref" and self.ref is not None:
            return self.ref
        if role == "ref" and self.lora:
            assert self.policy is not None
            return self.policy.module  # run with the adapters off (``_outputs``)
        assert self.critic is not None
        return self.critic.module

    def _collate(self, micro: TrainBatch, real: bool) -> Collated:
        """A micro-batch in the configured layout; the dummy pass of a rank with fewer micro-batches
        stays as small as possible (no wide packed row)."""
        if not real:
            return collate(micro, self.device)
        return collate(micro, self.device, packed=self.config.packing, row_width=self.config.packing_width)

    def _outputs(self, role: str, c: Collated, temperature: float, need_entropy: bool) -> dict[str, Tensor]:
        """Per-token outputs ``(N,)`` of ``role`` on a collated micro-batch (a collective: every rank
        runs it)."""
        root = self._root(role)
        if role == "critic":
            return {"values": root(**c.model_inputs(), rows=c.rows, cols=c.cols)}
        base_as_ref = role == "ref" and self.ref is None and self.lora
        with lora.adapters_disabled(root) if base_as_ref else contextlib.nullcontext():
            logits = root(**c.model_inputs(), rows=c.rows, cols=c.cols, sliced=self.sliced)
        return token_outputs.logprob_outputs(logits, c.targets, temperature, need_entropy)

    @torch.no_grad()
    def forward(
        self, batch: TrainBatch, groups: list[list[int]], n_micro: int, role: str, temperature: float,
        need_entropy: bool,
    ) -> dict[str, Tensor]:
        """No-grad outputs ``(b, R)`` for this rank's ``b`` sequences (``n_micro`` passes in all)."""
        self._check_onloaded()
        self._root(role).eval()
        names = token_outputs.output_names(role, need_entropy)
        results = token_outputs.empty_results(len(batch), batch.response_len, names)
        for k in range(n_micro):
            real = k < len(groups)
            idx = groups[k] if real else []
            micro = TrainBatch([batch.prompt_ids[i] for i in idx], [batch.response_ids[i] for i in idx])
            micro = micro if real else DUMMY
            c = self._collate(micro, real)
            per_token = self._outputs(role, c, temperature, need_entropy and real)
            if real:
                token_outputs.place(results, idx, c, per_token)
        # Without resharding after forward (the world-size-1 default) a no-grad pass leaves the
        # parameters gathered, and FSDP2 would reuse that copy after the next optimizer step.
        self._root(role).reshard()
        return results

    def train_step(
        self,
        batch: TrainBatch,
        groups: list[list[int]],
        n_micro: int,
        loss_payload: bytes,
        scale: LossScale,
        role: str,
        temperature: float,
        need_entropy: bool,
    ) -> tuple[update.Accumulated, update.StepOutcome]:
        """``update``'s step on this rank: forward/backward over its micro-batches (``n_micro`` passes,
        dummy ones after its own), then one (sharded) optimizer step.

        Gradients are summed over ranks by the reduce-scatter, so the step equals the
        single-process one on the whole mini-batch. A non-finite loss on any rank, or a
        non-finite gradient norm, skips the step on every rank. The driver merges every rank's
        results (``update.step_metrics``) and raises ``update.non_finite_error`` when the
        schedule did not step.
        """
        import torch.distributed as dist

        self._check_onloaded()
        try:
            loss_fn = pickle.loads(loss_payload)
        except (ImportError, AttributeError) as exc:
            raise SkyrlError(
                f"fsdp2 worker rank {self.rank}: cannot rebuild the loss function here ({type(exc).__name__}: {exc}). "
                "It is sent by reference, so its module must be importable in every Ray worker: define it in an "
                "installed package (a plugin), not in a script or a test file."
            ) from exc
        trained = self.critic if role == "critic" else self.policy
        assert trained is not None
        trained.module.train()

        def score(micro: update.MicroBatch) -> ForwardOutput:
            c = self._collate(micro.batch, micro.real)
            return token_outputs.scattered(c, self._outputs(role, c, temperature, need_entropy and micro.real))

        def any_rank(bad: bool) -> bool:
            flag = torch.tensor([1.0 if bad else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item() > 0)

        defer = n_micro > 1 and self.defer_gradient_sync

        def micro_batches() -> Any:
            for k in range(n_micro):
                if defer:  # only the last backward reduce-scatters and reshards ([strategy] defer_gradient_sync)
                    last = k == n_micro - 1
                    trained.module.set_requires_gradient_sync(last)
                    trained.module.set_reshard_after_backward(last)
                yield (update.MicroBatch(to_device(batch.select(groups[k]), self.device)) if k < len(groups)
                       else update.MicroBatch(to_device(DUMMY, self.device), real=False))

        acc = update.accumulate(
            trained, micro_batches(), score, loss_fn, scale, stop_at_non_finite=False, where=f"of rank {self.rank}"
        )
        t = self.trainer
        outcome = update.step_optimizer(
            trained, acc.bad, grad_clip=t.grad_clip, skip_nan=t.skip_nan, any_rank=any_rank, full=fm.full
        )
        return acc, outcome

    # -- weights ----------------------------------------------------------------------------

    def send_bucket(
        self, names: list[str], transport: str, path: str | None, dtypes: dict[str, str] | None
    ) -> dict[str, Any]:
        """Gather the full tensors ``names`` (every rank takes part) and send them by ``transport``.

        ``object_store``: rank 0 returns them. ``broadcast``: rank 0 broadcasts them in the weight
        group. ``disk``: rank 0 writes ``path``. ``cuda_ipc``: every rank keeps its gathered copy
        on its GPU and returns IPC handles (until ``release_bucket``). With ``dtypes`` rank 0 also
        returns their checksums cast to those (the engines') dtypes.
        """
        from skyrl_core.runtime import weight_sync as ws

        self._check_onloaded()
        named = []
        for name in names:
            if self.merged is not None:
                tensor = lora.merged_tensor(self.merged[name], full=fm.full)
            else:
                tensor = fm.full(self.weights[name].detach())
            named.append((name, tensor.to(self.transfer_dtype) if tensor.is_floating_point() else tensor))
        out: dict[str, Any] = {"checksums": {}, "handles": None, "bucket": None}
        if self.rank == 0 and dtypes is not None:
            out["checksums"] = ws.expected_checksums(named, dtypes)
        metas = [self._meta(n, t) for n, t in named]
        if transport == "cuda_ipc":
            self._ipc_keep = ws.pack(metas, [t for _, t in named])
            out["handles"] = [ws.ipc_handle(f) for f in self._ipc_keep]
        elif self.rank != 0:
            pass
        elif transport == "object_store":
            out["bucket"] = [(n, t.cpu()) for n, t in named]
        elif transport == "broadcast":
            if self._sync is None:
                raise RuntimeError("send_bucket(broadcast) before join_sync_group")
            for flat in ws.pack(metas, [t for _, t in named]):
                self._sync.broadcast(flat)
        elif transport == "disk":
            assert path is not None
            ws.write_bucket(Path(path), named)
        else:
            raise ValueError(f"unknown weight transport {transport!r}")
        return out

    def release_bucket(self) -> None:
        """Drop the GPU copies kept for ``cuda_ipc`` receivers."""
        self._ipc_keep = []

    def join_sync_group(self, host: str, port: int, size: int, timeout_s: float) -> None:
        """Rank 0 joins the weight broadcast group as its rank 0 (other ranks: nothing to do)."""
        from skyrl_core.runtime.weight_sync import SyncGroup

        if self.rank == 0:
            self._sync = SyncGroup(host, port, 0, size, self.device, timeout_s)

    def lora_adapter(self, version: int) -> Any:
        """The gathered adapter as a ``LoraAdapter`` with CPU tensors (rank 0; None elsewhere)."""
        from skyrl_core.strategies.lora import adapter_payload

        self._check_onloaded()
        payload = adapter_payload(self.peft, version, full=fm.full)
        if self.rank != 0:
            return None
        return attrs.evolve(payload, tensors=[(k, t.cpu()) for k, t in payload.tensors])

    def reset_ref(self) -> None:
        """Copy the policy's shards into the reference model (same sharding, so shard by shard)."""
        assert self.ref is not None and self.policy is not None
        model_parts.copy_into_reference(self.policy.module.state_dict(keep_vars=True), self.ref)

    # -- checkpoints and export -------------------------------------------------------------

    def _dcp_state(self, with_ref: bool) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        def weights(root: nn.Module) -> dict[str, Any]:  # with LoRA: adapters (+ value head) only
            state = get_model_state_dict(root)
            return lora.trainable_only(root, state) if self.lora else state

        assert self.policy is not None
        state: dict[str, Any] = {
            "policy": weights(self.policy.module),
            "policy_optim": get_optimizer_state_dict(self.policy.module, self.policy.optimizer),
        }
        if with_ref and self.ref is not None:
            state["ref"] = get_model_state_dict(self.ref)
        if self.critic is not None:
            state["critic"] = weights(self.critic.module)
            state["critic_optim"] = get_optimizer_state_dict(self.critic.module, self.critic.optimizer)
        return state

    def save(self, path: str) -> None:
        """Sharded weights and optimizer states (``dcp/``), schedules (rank 0) and this rank's RNG."""
        import torch.distributed.checkpoint as dcp

        self._check_onloaded()
        directory = Path(path)
        dcp.save(self._dcp_state(with_ref=True), checkpoint_id=str(directory / "dcp"))
        if self.rank == 0:
            for role, trained in (("policy", self.policy), ("critic", self.critic)):
                if trained is not None:
                    torch.save(trained.scheduler.state_dict(), directory / SCHEDULER_FILE.format(role=role))
        torch.save(rng_state(), directory / RNG_FILE.format(rank=self.rank))

    def load(self, path: str, with_ref: bool) -> None:
        """Restore ``save``'s files; the shards are re-cut for this world size by DCP."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        self._check_onloaded()
        directory = Path(path)
        state = self._dcp_state(with_ref=with_ref)
        dcp.load(state, checkpoint_id=str(directory / "dcp"))
        assert self.policy is not None
        partial = StateDictOptions(strict=not self.lora)  # LoRA: the base comes from the model folder
        set_model_state_dict(self.policy.module, state["policy"], options=partial)
        set_optimizer_state_dict(self.policy.module, self.policy.optimizer, state["policy_optim"])
        if "ref" in state:
            set_model_state_dict(self.ref, state["ref"])
        if self.critic is not None:
            set_model_state_dict(self.critic.module, state["critic"], options=partial)
            set_optimizer_state_dict(self.critic.module, self.critic.optimizer, state["critic_optim"])
        for role, trained in (("policy", self.policy), ("critic", self.critic)):
            if trained is not None:
                trained.scheduler.load_state_dict(torch.load(directory / SCHEDULER_FILE.format(role=role)))
        rng_file = directory / RNG_FILE.format(rank=self.rank)
        if rng_file.is_file():  # a rank that did not exist at save time keeps its own RNG
            set_rng_state(torch.load(rng_file))

    def export(self, path: str, adapter: bool = False) -> bool:
        """Gather the full policy on rank 0 and ``save_pretrained`` it to ``path`` in ``[model] dtype``
        (LoRA: the merged model, or with ``adapter`` the peft adapter folder)."""
        self._check_onloaded()
        assert self.policy is not None
        if self.lora:
            dtype, rank = self.model_cfg.dtype, self.rank
            return lora.export_sharded(self.peft, Path(path), adapter=adapter, dtype=dtype, rank=rank, full=fm.full)
        return fm.export_hf(self.policy.module, set(self.weights), self.model_cfg, Path(path), self.rank)

    # -- placement --------------------------------------------------------------------------

    def _placed(self) -> tuple[list[nn.Module], list[torch.optim.Optimizer]]:
        trained = [t for t in (self.policy, self.critic) if t is not None]
        modules = [t.module for t in trained] + ([self.ref] if self.ref is not None else [])
        return modules, [t.optimizer for t in trained]

    def offload(self) -> None:
        """Sharded weights and optimizer states to CPU (GPU workers; a no-op on CPU)."""
        if self.device.type != "cuda" or self._offloaded:
            return
        fm.offload(*self._placed())
        self._offloaded = True

    def onload(self) -> None:
        if not self._offloaded:
            return
        fm.onload(*self._placed(), self.device)
        self._offloaded = False

    def _check_onloaded(self) -> None:
        if self._offloaded:
            raise RuntimeError("fsdp2 worker is offloaded to CPU; call onload() first")

    def pid(self) -> int:
        return os.getpid()

    # -- measurement ------------------------------------------------------------------------

    def start_profile(self) -> None:
        """Start a ``torch.profiler`` trace of this rank's passes."""
        self._profiler = profiling.start(self.device.type == "cuda")

    def stop_profile(self, top: int = 15) -> dict[str, Any]:
        """Stop the trace and return its summary (``profiling.summarize``)."""
        prof, self._profiler = self._profiler, None
        if prof is None:
            raise RuntimeError("stop_profile() without start_profile()")
        return profiling.stop(prof, top)

    def peak_memory_gib(self, reset: bool = True) -> float:
        """Peak GPU memory allocated by this rank since the last reset (0 on CPU)."""
        if self.device.type != "cuda":
            return 0.0
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device) / float(1 << 30)
        if reset:
            torch.cuda.reset_peak_memory_stats(self.device)
        return peak

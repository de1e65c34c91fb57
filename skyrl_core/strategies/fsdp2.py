"""The ``fsdp2`` training strategy: PyTorch FSDP2 over N Ray workers, driven from the trainer.

``Fsdp2Strategy`` lives in the driver and implements ``TrainingStrategy`` like ``local``,
so the training loop does not change. It starts ``[runtime] train_gpus`` Ray actors
(``fsdp2_worker.Fsdp2Worker``, one per GPU, or one per CPU worker with gloo), each one rank
of a torch.distributed group holding its shards of the policy (and of the reference model
and critic when asked), sharded with ``fully_shard`` per decoder layer and root, in bf16
with fp32 gradient reduction when ``[model] dtype = "bfloat16"``::

    [strategy]
    name = "fsdp2"

    [runtime]
    mode = "ray"
    train_gpus = 8

Each pass splits the batch over the ranks (balanced by tokens), and each rank packs its
share into micro-batches by the token budget exactly like ``local``. The loss function is
sent to the workers pickled *by reference* and called with the mini-batch's global
``LossScale``; gradients are summed over ranks, so one step equals ``local``'s on the same
mini-batch (up to floating-point summation order). It is ``local``'s step, not a copy: every
worker runs ``skyrl_core.strategies.update`` (accumulation, non-finite skip agreed by all
ranks, clipping, AdamW and schedule steps) and the per-token outputs of ``token_outputs``,
and the driver merges the ranks' results with ``update.step_metrics``.

A worker that dies (crash, out-of-memory kill, node loss) stops the others and raises
``WorkerDiedError`` naming it, instead of leaving the run hanging in a collective.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from skyrl_core.config.schema import ModelConfig, TrainerConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.strategy import ForwardOutput, LossFn, ModelRole, TrainBatch
from skyrl_core.runtime.calls import ActorGroup, check_same_plugins, import_ray, plugin_table
from skyrl_core.strategies import lora, memory, token_outputs, update
from skyrl_core.strategies.batch_layout import check_packing_width
from skyrl_core.strategies.checkpoint_files import (
    RNG_STATE,
    STRATEGY_STATE,
    CheckpointError,
    replace_dir,
    require_files,
    rng_state,
    set_rng_state,
)
from skyrl_core.strategies.fsdp2_config import Fsdp2StrategyConfig
from skyrl_core.strategies.micro_batching import loss_scale, pack_by_token_budget

DCP_DIR = "dcp"


def split_over_ranks(lengths: list[int], has_response: list[bool], world_size: int) -> list[list[int]]:
    """Assign sequences to ranks, balancing tokens (longest first, to the least loaded rank).

    Sequences without a response are left out (there is nothing to score or learn on them).
    Each rank's indices are returned in batch order.
    """
    shares: list[list[int]] = [[] for _ in range(world_size)]
    load = [0] * world_size
    order = sorted((i for i in range(len(lengths)) if has_response[i]), key=lambda i: (-lengths[i], i))
    for i in order:
        r = min(range(world_size), key=lambda k: (load[k], k))
        shares[r].append(i)
        load[r] += lengths[i]
    return [sorted(s) for s in shares]


class Fsdp2Strategy:
    """Sharded training over Ray workers (see the module docstring).

    Args:
        config: ``[strategy]`` options (``Fsdp2StrategyConfig``; None for defaults).
        model: ``[model]``: path (visible on every node), dtype (``float32`` or ``bfloat16``),
            device (``auto`` uses the GPU Ray gives each worker; ``cpu`` forces CPU workers).
        trainer: ``[trainer]``: optimiser, schedule, micro-batch budget, checkpointing.
        seed: seeds the critic head's initialisation (as ``local``).
        need_ref: keep a frozen, sharded copy of the initial policy for ``role="ref"``.
        need_critic: build a sharded value model for ``role="critic"``.
        total_optimizer_steps: the schedule's horizon.

    The number of workers and where they run come from ``[runtime]`` (``train_gpus``,
    ``colocate``, ``address``), recorded with ``skyrl_core.runtime.configure``.
    """

    def __init__(
        self,
        config: Fsdp2StrategyConfig | None,
        *,
        model: ModelConfig,
        trainer: TrainerConfig,
        seed: int,
        need_ref: bool = False,
        need_critic: bool = False,
        total_optimizer_steps: int = 1,
    ) -> None:
        from skyrl_core import runtime
        from skyrl_core.config.render import to_dict
        from skyrl_core.plugins import build_registry
        from skyrl_core.runtime.engine import worker_env
        from skyrl_core.strategies.fsdp2_worker import Fsdp2Worker

        rt_cfg = runtime.configured()
        if rt_cfg.mode != "ray":
            raise SkyrlError(
                "[strategy] name = 'fsdp2' runs its workers as Ray actors: set [runtime] mode = 'ray' (leave "
                "address unset to start a local Ray cluster); use the local strategy for one process"
            )
        if model.dtype == "float16":
            raise SkyrlError(
                "[model] dtype = 'float16': the fsdp2 strategy trains in float32 or bfloat16 (fp16 needs loss "
                "scaling it does not implement); use dtype = 'bfloat16'"
            )
        ray = import_ray()
        self.config = config if config is not None else Fsdp2StrategyConfig()
        self.model_config = model
        self.trainer = trainer
        check_packing_width(self.config, trainer)
        self.need_ref = need_ref
        self.need_critic = need_critic
        self.optimizer_steps = 0
        self._offloaded = False
        self._adapter_version = 0
        self.runtime = runtime.ray_runtime()
        self.world_size = rt_cfg.train_gpus
        spec = {
            "model": to_dict(model),
            "trainer": to_dict(trainer),
            "strategy": to_dict(self.config),
            "seed": seed,
            "need_ref": need_ref,
            "need_critic": need_critic,
            "total_optimizer_steps": total_optimizer_steps,
        }
        actor_cls = ray.remote(Fsdp2Worker)
        actors = []
        for rank, slot in enumerate(self.runtime.train_slots(self.world_size)):
            actor = actor_cls.options(**slot.options(), **worker_env()).remote(rank, self.world_size, spec)
            self.runtime.track(actor)
            actors.append(actor)
        names = [f"fsdp2 worker rank {r}" for r in range(self.world_size)]
        self.workers = ActorGroup(actors, names, "the fsdp2 workers")
        nodes = self.workers.call("node")
        self._rendezvous_host = nodes[0]["ip"]
        infos = self.workers.call("setup", f"{nodes[0]['ip']}:{nodes[0]['port']}")
        self.workers.names = [f"{n} (node {i['ip']}, pid {i['pid']})" for n, i in zip(names, infos, strict=True)]
        check_same_plugins(plugin_table(build_registry()), {n: i["plugins"] for n, i in zip(names, infos, strict=True)})
        self.gpu = infos[0]["device"].startswith("cuda")
        self.logits_mode = "sliced" if infos[0]["sliced"] else "full"
        self.checkpointing = memory.CheckpointingChoice(**infos[0]["checkpointing"])
        self.fused_optimizer = bool(infos[0]["fused_optimizer"])
        memory.announce(self.checkpointing, trainer.gradient_checkpointing, "fsdp2")
        self._metas = infos[0]["metas"]
        self.runtime.register(trainer=self)

    # -- planning ---------------------------------------------------------------------------

    def _plan(self, batch: TrainBatch, budget: int) -> tuple[list[list[int]], list[list[list[int]]], int]:
        """``(indices of each rank, micro-batches of each rank (indices into its share), passes)``."""
        lengths = [batch.seq_len(i) for i in range(len(batch))]
        shares = split_over_ranks(lengths, [bool(r) for r in batch.response_ids], self.world_size)
        groups = [
            pack_by_token_budget(
                [lengths[i] for i in share],
                budget,
                sort=self.config.sort_micro_batches,
                packed=self.config.packing,
                row_width=self.config.packing_width,
            )
            if share else []
            for share in shares
        ]
        return shares, groups, max((len(g) for g in groups), default=0)

    def enter_train(self) -> None:
        """Make sure the workers hold their shards on the accelerator (colocation: the engines sleep
        first); called at the start of every pass, sync, save and export."""
        self.runtime.enter("train")
        if self._offloaded:
            raise RuntimeError("the fsdp2 strategy is offloaded; call onload() before using it")

    def _check_role(self, role: ModelRole) -> None:
        if role == "ref" and not self.need_ref:
            raise ValueError("role='ref' but the strategy was built without a reference model (need_ref=False)")
        if role == "critic" and not self.need_critic:
            raise ValueError("role='critic' but the strategy was built without a critic (need_critic=False)")
        if role not in ("policy", "ref", "critic"):
            raise ValueError(f"role {role!r}: expected 'policy', 'ref' or 'critic'")

    # -- passes -----------------------------------------------------------------------------

    def forward(
        self, batch: TrainBatch, *, role: ModelRole = "policy", temperature: float = 1.0, need_entropy: bool = False
    ) -> ForwardOutput:
        """No-grad pass over ``batch`` on all workers; same outputs as ``LocalStrategy.forward``:
        ``logprobs`` (and ``entropy``) or ``values``, float32 CPU ``(B, R)``, 0 past each response."""
        self._check_role(role)
        temperature = token_outputs.effective_temperature(temperature)
        self.enter_train()
        budget = self.config.forward_micro_batch_tokens or self.trainer.micro_batch_tokens
        shares, groups, n_micro = self._plan(batch, budget)
        per_rank = [
            (TrainBatch([batch.prompt_ids[i] for i in s], [batch.response_ids[i] for i in s]), g, n_micro, role,
             temperature, need_entropy)
            for s, g in zip(shares, groups, strict=True)
        ]
        outs = self.workers.call("forward", per_actor=per_rank)
        names = token_outputs.output_names(role, need_entropy)
        results = token_outputs.empty_results(len(batch), batch.response_len, names)
        for share, out in zip(shares, outs, strict=True):
            if not share:
                continue
            index = torch.tensor(share, dtype=torch.long)
            for name in names:
                results[name][index, : out[name].shape[1]] = out[name]
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
        """One optimizer step of ``role`` over the mini-batch, on all workers (``update``'s step).

        Returns the same metrics as ``LocalStrategy.train_step`` (loss metrics weighted by
        loss tokens, ``grad_norm``, ``lr``, ``skipped``, ``micro_batches`` (over all ranks),
        ``tokens``, ``fwd_bwd_s`` and ``optimizer_s`` (the slowest rank's)), and raises the
        same ``FloatingPointError`` on a non-finite loss or gradient without ``trainer.skip_nan``.
        """
        if role == "ref":
            raise ValueError("train_step(role='ref'): the reference model is frozen; train 'policy' or 'critic'")
        self._check_role(role)
        temperature = token_outputs.effective_temperature(temperature)
        payload = _pickle_loss(loss_fn)
        scale = loss_scale(batch)
        self.enter_train()
        shares, groups, n_micro = self._plan(batch, self.trainer.micro_batch_tokens)
        per_rank = [
            (batch.select(s), g, n_micro, payload, scale, role, temperature, need_entropy)
            for s, g in zip(shares, groups, strict=True)
        ]
        outs = self.workers.call("train_step", per_actor=per_rank)
        parts, outcomes = [acc for acc, _ in outs], [outcome for _, outcome in outs]
        if not outcomes[0].stepped_schedule:  # the ranks agree: none stepped
            raise update.non_finite_error(role, next((o.bad for o in outcomes if o.bad), None))
        if role == "policy":
            self.optimizer_steps += 1
        tokens = sum(batch.seq_len(i) for i in range(len(batch)))
        return update.step_metrics(parts, outcomes, micro_batches=sum(len(g) for g in groups), tokens=tokens, role=role)

    # -- weights ----------------------------------------------------------------------------

    def weight_plan(self, bucket_bytes: int) -> list[list[Any]]:
        """The policy's tensors (``TensorMeta``: HF name, shape, transfer dtype) in buckets."""
        from skyrl_core.runtime.weight_sync import plan_buckets

        self.enter_train()  # colocated: the engines sleep, the workers hold their shards
        return plan_buckets(self._metas, bucket_bytes)

    def named_weights(self, bucket_bytes: int = 1 << 28) -> Iterator[list[tuple[str, Tensor]]]:
        """The policy's full weights, gathered bucket by bucket and returned by rank 0.

        Floating tensors come in ``[model] dtype`` (float32 or bfloat16), on CPU. Tied
        weights come once (``lm_head.weight`` is left out with tied embeddings, as in
        ``local``). Only one bucket is ever gathered at a time.
        """
        self.enter_train()
        for metas in self.weight_plan(bucket_bytes):
            outs = self.workers.call("send_bucket", [m.name for m in metas], "object_store", None, None)
            yield outs[0]["bucket"]

    # -- the source side of direct weight transfers (protocols.weights.ShardedWeightSource) ----

    def direct_transports(self) -> tuple[str, ...]:
        """``broadcast`` and ``disk`` always; ``cuda_ipc`` when the workers have GPUs."""
        return ("broadcast", "disk", *(("cuda_ipc",) if self.gpu else ()))

    def rendezvous(self) -> tuple[str, int]:
        """Host and a free port on rank 0's node (for the weight broadcast group)."""
        info = self.workers.wait([self.workers.actors[0].node.remote()], what="rendezvous")[0]
        return info["ip"], int(info["port"])

    def join_weight_group(self, host: str, port: int, world_size: int) -> Any:
        """Rank 0 joins the broadcast group as its rank 0 (the other ranks only take part in gathers)."""
        from skyrl_core.runtime.calls import RayPending

        refs = self.workers.submit("join_sync_group", host, port, world_size, self.config.timeout_s)
        return RayPending(self.workers, refs, "forming the weight broadcast group")

    def send_bucket(
        self, names: Any, transport: str, *, path: str | None = None, dtypes: dict[str, str] | None = None
    ) -> Any:
        """Every rank gathers the tensors ``names`` and rank 0 (``cuda_ipc``: every rank) sends them;
        the result is a ``BucketSent`` (rank 0's checksums; each rank's IPC handles)."""
        from skyrl_core.protocols.weights import BucketSent
        from skyrl_core.runtime.calls import RayPending

        self.enter_train()
        refs = self.workers.submit("send_bucket", list(names), transport, path, dtypes)

        def sent(outs: list[dict[str, Any]]) -> BucketSent:
            handles = tuple(o["handles"] for o in outs) if transport == "cuda_ipc" else ()
            return BucketSent(checksums=outs[0]["checksums"], handles=handles)

        return RayPending(self.workers, refs, f"weight sync ({transport})", sent)

    def release_bucket(self) -> None:
        """Drop the GPU copies kept for ``cuda_ipc`` receivers."""
        self.workers.call("release_bucket")

    def lora_config(self) -> Any:
        """``[model.lora]`` when this strategy trains adapters, else None (``TrainsLoraAdapters``)."""
        return self.model_config.lora if lora.enabled(self.model_config) else None

    def lora_adapter(self) -> Any:
        """The trained adapter (``LoraAdapter``, gathered on rank 0), for engines that
        load LoRA adapters (``[model.lora] sync``)."""
        if not lora.enabled(self.model_config):
            raise ValueError("lora_adapter(): this strategy trains without LoRA ([model.lora] rank = 0)")
        self.enter_train()
        self._adapter_version += 1
        return self.workers.call("lora_adapter", self._adapter_version)[0]

    def reset_ref(self) -> None:
        """Make the reference model a copy of the current policy (e.g. after a warm start)."""
        self._check_role("ref")
        if lora.enabled(self.model_config):
            raise SkyrlError(
                "reset_ref: with [model.lora] fsdp2 cannot copy the policy into the reference (the base model with "
                "the adapters off, or [model] ref_path): it cannot fold sharded adapters into the base. Export the "
                "merged model and start a new run from it."
            )
        self.enter_train()
        self.workers.call("reset_ref")

    # -- checkpoints and export -------------------------------------------------------------

    def save_checkpoint(self, path: Path) -> None:
        """Sharded weights + optimizer states (``dcp/``, loadable at another world size),
        schedules, every rank's RNG, the driver's RNG and ``strategy.json``.

        Every worker writes its own shards under ``path``: in multi-node runs ``path`` must
        be on a filesystem all nodes share.
        """
        self.enter_train()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.workers.call("save", str(path.resolve()))
        torch.save(rng_state(), path / RNG_STATE)
        meta = {
            "strategy": "fsdp2",
            "world_size": self.world_size,
            "optimizer_steps": self.optimizer_steps,
            "has_ref": self.need_ref,
            "has_critic": self.need_critic,
            "dtype": self.model_config.dtype,
        }
        if lora.enabled(self.model_config):  # dcp/ then holds the adapters, not the base weights
            meta["lora"] = lora.describe(self.model_config.lora)
        (path / STRATEGY_STATE).write_text(json.dumps(meta, indent=2) + "\n")

    def load_checkpoint(self, path: Path) -> None:
        """Restore ``save_checkpoint``'s files (any world size); training continues exactly."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"checkpoint {path} is not a directory; point checkpoint.resume at one")
        require_files(path, [(STRATEGY_STATE, "strategy state"), (RNG_STATE, "RNG states")])
        meta = json.loads((path / STRATEGY_STATE).read_text())
        if meta.get("strategy") != "fsdp2":
            raise CheckpointError(
                f"checkpoint {path} was written by the {meta.get('strategy', 'unknown')!r} strategy; fsdp2 reads only "
                "its own (sharded) checkpoints. Export it with `skyrl export` and start from that model instead."
            )
        lora.check_checkpoint(meta, self.model_config.lora, path)
        if self.need_critic and not meta.get("has_critic"):
            raise CheckpointError(
                f"checkpoint {path} has no critic, but this run trains one; resume with the same advantage estimator"
            )
        if not (path / DCP_DIR / ".metadata").is_file():
            raise CheckpointError(f"checkpoint {path}: {DCP_DIR}/.metadata is missing (incomplete checkpoint)")
        self.enter_train()
        self.workers.call("load", str(path.resolve()), bool(meta.get("has_ref")))
        set_rng_state(torch.load(path / RNG_STATE))
        self.optimizer_steps = int(meta.get("optimizer_steps", 0))

    def export_hf(self, path: Path, tokenizer: Any) -> None:
        """Write a Hugging Face folder (weights in ``[model] dtype`` from rank 0, plus the tokenizer);
        with LoRA the merged model or the peft adapter, as ``[model.lora] export`` says.

        Written to a temporary sibling directory and renamed into place. Rank 0 writes the
        weights, so ``path`` must be on a filesystem rank 0's node shares with the driver.
        """
        self.enter_train()
        path = Path(path).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        try:
            adapter = lora.enabled(self.model_config) and self.model_config.lora.export == "adapter"
            self.workers.call("export", str(tmp), adapter)
            if not (tmp / ("adapter_config.json" if adapter else "config.json")).is_file():
                raise SkyrlError(
                    f"export to {path}: rank 0 wrote the model on its own node ({self._rendezvous_host}), which "
                    "does not share this directory with the driver; put run.dir on a shared filesystem"
                )
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            replace_dir(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- placement --------------------------------------------------------------------------

    def offload(self) -> None:
        """Move every worker's shards and optimizer states to CPU (GPU workers; no-op on CPU)."""
        if self._offloaded:
            return
        self.workers.call("offload")
        self._offloaded = True

    def onload(self) -> None:
        """Undo ``offload``."""
        if not self._offloaded:
            return
        self.workers.call("onload")
        self._offloaded = False

    def start_profile(self) -> None:
        """Start a ``torch.profiler`` trace on every worker (``stop_profile`` summarises it)."""
        self.workers.call("start_profile")

    def stop_profile(self, top: int = 15) -> list[dict[str, Any]]:
        """Each rank's trace summary since ``start_profile`` (``strategies.profiling.summarize``)."""
        return self.workers.call("stop_profile", top)

    def peak_memory_gib(self, reset: bool = True) -> list[float]:
        """Each rank's peak GPU memory (GiB) since the last reset (0 on CPU workers)."""
        return self.workers.call("peak_memory_gib", reset)

    def shutdown(self) -> None:
        """End the workers (also happens when the strategy is garbage-collected)."""
        self.workers.stop("shut down")


def _pickle_loss(loss_fn: LossFn) -> bytes:
    """The loss function pickled by reference, or an error that says how to make it so."""
    try:
        return pickle.dumps(loss_fn)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise SkyrlError(
            f"the fsdp2 strategy sends the loss function to its Ray workers by reference, but {loss_fn!r} cannot be "
            f"pickled that way ({exc}). Use a module-level function or an instance of a module-level class "
            "(like skyrl_core.losses.PolicyLossFn), not a closure or lambda."
        ) from exc

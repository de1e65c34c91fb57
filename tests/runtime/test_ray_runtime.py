"""The Ray runtime on a local cluster: placement, engines in actors, weight sync, dead workers.

Everything runs for real: Ray actors, torch.distributed (gloo) groups, the native backend
inside an actor, FSDP2 workers. The CPU cluster stands in for GPUs ("GPUs" are CPU workers);
the CUDA-only transport (cuda_ipc) is covered by the GPU run noted in docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import os
import signal

import attrs
import pytest
import torch

from skyrl_core import runtime
from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.config.schema import RuntimeConfig, TrainerConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.losses import sft_loss
from skyrl_core.protocols.backend import GenerateRequest, SamplingParams
from skyrl_core.protocols.strategy import TrainBatch
from skyrl_core.runtime.calls import WorkerDiedError, check_same_plugins
from skyrl_core.runtime.cluster import check_resources
from skyrl_core.runtime.weight_sync import (
    TensorMeta,
    WeightSyncError,
    choose_transport,
    pack,
    plan_buckets,
    transfer_weights,
    unpack,
    verify_engine_weights,
)

SPLIT = RuntimeConfig(mode="ray", train_gpus=2, inference_gpus=1, colocate=False, verify_weights=True)
REQUESTS = [
    GenerateRequest([1, 2, 3], SamplingParams(max_new_tokens=8, n=2)),
    GenerateRequest([4, 5], SamplingParams(max_new_tokens=6, temperature=0.0)),
    GenerateRequest([6, 7, 8, 9], SamplingParams(max_new_tokens=5, seed=11, top_k=20)),
]


def build(cfg: RuntimeConfig, model_cfg, *, strategy: bool = True):
    """(fsdp2 strategy or None, RayBackend) placed as ``cfg`` says."""
    from skyrl_core.runtime.engine import RayBackend
    from skyrl_core.strategies.fsdp2 import Fsdp2Strategy

    runtime.configure(cfg)
    trainer = attrs.evolve(TrainerConfig(), lr=1e-2, weight_decay=0.0)
    fsdp2 = Fsdp2Strategy(None, model=model_cfg, trainer=trainer, seed=0) if strategy else None
    backend = RayBackend("native", NativeBackendConfig(), model=model_cfg, seed=3)
    return fsdp2, backend


def sft_batch(n: int = 4) -> TrainBatch:
    prompts = [[1 + i, 2, 3] for i in range(n)]
    responses = [[5, 6 + i, 7, 8] for i in range(n)]
    return TrainBatch(prompts, responses, {"loss_mask": torch.ones(n, 4)})


# -- no cluster needed -----------------------------------------------------------------------


def test_resource_errors_say_what_and_what_to_do():
    cfg = RuntimeConfig(mode="ray", train_gpus=8, colocate=True)
    with pytest.raises(SkyrlError, match=r"colocated needs 8 GPUs, but the Ray cluster at 'auto' has 4"):
        check_resources(cfg, {"GPU": 4.0, "CPU": 64.0}, where="the Ray cluster at 'auto'")
    split = RuntimeConfig(mode="ray", train_gpus=4, inference_gpus=2, colocate=False)
    with pytest.raises(SkyrlError, match="needs 6 GPUs") as err:
        check_resources(split, {"GPU": 4.0}, where="the cluster")
    assert "add GPU nodes" in str(err.value)
    check_resources(split, {"GPU": 8.0}, where="the cluster")
    with pytest.raises(SkyrlError, match=r"inference_gpus \(4\) must be <= train_gpus \(2\)"):
        check_resources(RuntimeConfig(mode="ray", train_gpus=2, inference_gpus=4), {"GPU": 8.0}, where="x")
    with pytest.raises(SkyrlError, match="colocate = false needs inference_gpus >= 1"):
        check_resources(RuntimeConfig(mode="ray", colocate=False, inference_gpus=0), {"GPU": 8.0}, where="x")
    with pytest.raises(SkyrlError, match=r"needs 3 CPU workers .* has 2 CPUs"):
        check_resources(SPLIT, {"CPU": 2.0}, where="the local Ray cluster")


def test_transport_follows_placement():
    # what both sides offer: Ray workers and Ray engines on GPUs / on CPUs; a strategy in the driver
    gpu, cpu, none = ("broadcast", "disk", "cuda_ipc"), ("broadcast", "disk"), ()
    assert choose_transport(RuntimeConfig(mode="local"), none) == "in_process"
    assert choose_transport(SPLIT, gpu) == "broadcast"
    assert choose_transport(attrs.evolve(SPLIT, colocate=True), gpu) == "cuda_ipc"
    assert choose_transport(attrs.evolve(SPLIT, colocate=True), cpu) == "broadcast"
    assert choose_transport(SPLIT, none) == "object_store"
    with pytest.raises(SkyrlError, match="needs GPUs and colocate = true"):
        choose_transport(attrs.evolve(SPLIT, weight_sync="cuda_ipc"), cpu)
    with pytest.raises(SkyrlError, match="share no direct transport"):
        choose_transport(attrs.evolve(SPLIT, weight_sync="disk"), none)


def test_buckets_pack_and_unpack_exactly():
    tensors = [torch.randn(3, 4), torch.arange(5), torch.randn(7).to(torch.bfloat16), torch.randn(2, 2)]
    metas = [TensorMeta(f"t{i}", tuple(t.shape), str(t.dtype).removeprefix("torch.")) for i, t in enumerate(tensors)]
    flats = pack(metas, tensors)
    assert len(flats) == 3  # one flat buffer per dtype
    for (name, got), meta, want in zip(unpack(metas, flats), metas, tensors, strict=True):
        assert name == meta.name and torch.equal(got, want)
    assert [[m.name for m in b] for b in plan_buckets(metas, 60)] == [["t0"], ["t1", "t2"], ["t3"]]


def test_plugin_mismatch_names_the_worker_and_the_versions():
    driver = [("skyrl-core", "0.1.0", "ok"), ("skyrl-env-sql", "0.2.0", "ok")]
    check_same_plugins(driver, {"engine 0": list(driver)})
    with pytest.raises(SkyrlError, match=r"engine 0 sees skyrl-env-sql 0.1.0 \(ok\), the driver 0.2.0 \(ok\)"):
        check_same_plugins(driver, {"engine 0": [("skyrl-core", "0.1.0", "ok"), ("skyrl-env-sql", "0.1.0", "ok")]})


def test_in_process_sync_with_checksums(model_cfg):
    """mode = 'local': named_weights buckets copied into the backend, verified by checksum."""
    from skyrl_core.strategies.local import LocalStrategy

    runtime.configure(RuntimeConfig())
    strategy = LocalStrategy(None, model=model_cfg, trainer=attrs.evolve(TrainerConfig(), lr=1e-2), seed=0)
    backend = NativeBackend(NativeBackendConfig(), model=model_cfg, seed=0)
    strategy.train_step(sft_batch(), sft_loss)
    with pytest.raises(WeightSyncError, match="does not hold the trainer's weights"):
        verify_engine_weights(strategy, backend)
    stats = transfer_weights(strategy, backend, RuntimeConfig(verify_weights=True))
    assert stats["weight_sync/verified"] == 1.0 and stats["weight_sync/buckets"] >= 1
    assert verify_engine_weights(strategy, backend) == sum(len(b) for b in strategy.named_weights())
    backend.shutdown()


# -- on the cluster --------------------------------------------------------------------------


def test_cluster_too_small_is_a_clear_error(ray_cluster):
    runtime.configure(RuntimeConfig(mode="ray", train_gpus=8, colocate=True))
    with pytest.raises(SkyrlError, match=r"needs 8 CPU workers .* the local Ray cluster has 4 CPUs"):
        runtime.ray_runtime()
    runtime.configure(RuntimeConfig())


def test_engine_actor_generates_like_the_in_process_backend_and_takes_driver_weights(ray_cluster, model_cfg):
    _, remote = build(SPLIT, model_cfg, strategy=False)
    local = NativeBackend(NativeBackendConfig(), model=model_cfg, seed=3)
    loop = asyncio.new_event_loop()
    try:
        got = loop.run_until_complete(remote.generate(REQUESTS))
        want = loop.run_until_complete(local.generate(REQUESTS))
        local.shutdown()
        loop.run_until_complete(asyncio.sleep(0.05))  # lets the batcher task see the shutdown
    finally:
        loop.close()
    assert remote.capabilities.weight_transports[:3] == ("object_store", "broadcast", "disk")
    for g, w in zip(got, want, strict=True):
        assert [c.token_ids for c in g.completions] == [c.token_ids for c in w.completions]
        assert [c.finish_reason for c in g.completions] == [c.finish_reason for c in w.completions]
        for a, b in zip(g.completions, w.completions, strict=True):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)  # 1 vs 2 torch threads

    # The local strategy (in the driver) with engines in Ray: weights go through the object store.
    from skyrl_core.strategies.local import LocalStrategy

    strategy = LocalStrategy(None, model=model_cfg, trainer=attrs.evolve(TrainerConfig(), lr=1e-2), seed=0)
    strategy.train_step(sft_batch(), sft_loss)
    stats = transfer_weights(strategy, remote, SPLIT)
    assert stats["weight_sync/verified"] == 1.0
    assert verify_engine_weights(strategy, remote) > 0
    remote.shutdown()


def test_weight_sync_transports_with_checksums(ray_cluster, model_cfg):
    """Every transport leaves the engine holding exactly the trainer's weights."""
    fsdp2, backend = build(SPLIT, model_cfg)
    for transport in ("broadcast", "disk", "object_store"):
        fsdp2.train_step(sft_batch(), sft_loss)  # new weights that the engine lacks
        with pytest.raises(WeightSyncError, match="does not hold the trainer's weights"):
            verify_engine_weights(fsdp2, backend)
        stats = transfer_weights(fsdp2, backend, attrs.evolve(SPLIT, weight_sync=transport))
        assert stats["weight_sync/verified"] == 1.0
        assert verify_engine_weights(fsdp2, backend) == len(fsdp2.weight_plan(1 << 30)[0])
    # Several buckets: the engine still ends up with everything.
    fsdp2.train_step(sft_batch(), sft_loss)
    stats = transfer_weights(fsdp2, backend, SPLIT, bucket_bytes=1 << 15)
    assert stats["weight_sync/buckets"] == len(fsdp2.weight_plan(1 << 15)) > 3
    verify_engine_weights(fsdp2, backend)
    backend.shutdown()
    fsdp2.shutdown()


def test_colocated_engines_share_the_training_bundles(ray_cluster, model_cfg):
    """Two workers + two engines in two bundles; phases switch as the loop alternates."""
    from ray.util.placement_group import placement_group_table

    cfg = RuntimeConfig(mode="ray", train_gpus=2, inference_gpus=0, colocate=True, verify_weights=True)
    fsdp2, backend = build(cfg, model_cfg)
    rt = runtime.active()
    assert len(backend.engines) == 2
    tables = [t for t in placement_group_table().values() if t["state"] == "CREATED"]
    assert [len(t["bundles"]) for t in tables if t["name"].startswith("skyrl-shared")] == [2]
    assert not [t for t in tables if t["name"].startswith(("skyrl-train", "skyrl-inference"))]

    stats = transfer_weights(fsdp2, backend, cfg)  # auto: broadcast on CPU workers, to both engines
    assert stats["weight_sync/verified"] == 1.0 and rt.phase == "train"
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(backend.generate(REQUESTS))
        assert rt.phase == "generate"
        fsdp2.forward(sft_batch())
        assert rt.phase == "train"
        loop.run_until_complete(backend.generate(REQUESTS[:1]))
        assert rt.phase == "generate"
    finally:
        loop.close()
    backend.shutdown()
    fsdp2.shutdown()


def test_a_dead_worker_is_a_clear_error_not_a_hang(ray_cluster, model_cfg):
    fsdp2, backend = build(SPLIT, model_cfg)
    pid = ray_cluster.get(fsdp2.workers.actors[1].pid.remote())
    os.kill(pid, signal.SIGKILL)  # like the out-of-memory killer
    # Rank 0 enters the step and blocks in its first all-gather; rank 1's death must still surface.
    with pytest.raises(WorkerDiedError, match=r"fsdp2 worker rank 1 .* died during train_step") as err:
        fsdp2.train_step(sft_batch(), sft_loss)
    assert "resumes from its last checkpoint" in str(err.value)
    with pytest.raises(WorkerDiedError, match="stopped after an earlier failure"):
        fsdp2.forward(sft_batch())

    pid = ray_cluster.get(backend.engines.actors[0].pid.remote())
    os.kill(pid, signal.SIGKILL)
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(WorkerDiedError, match=r"inference engine 0 .* died during generate"):
            loop.run_until_complete(backend.generate(REQUESTS))
    finally:
        loop.close()
    backend.shutdown()


def test_a_peers_death_is_reported_over_the_error_it_caused(ray_cluster):
    """The race behind a dead rank: its peer's collective fails first ("Connection closed by
    peer"), the death is seen a moment later. ``wait_all`` names the dead worker as the cause."""
    from skyrl_core.runtime.calls import wait_all

    @ray_cluster.remote
    class Rank:
        def step(self, role: str) -> None:
            import time

            if role == "survivor":  # its all-gather lost the peer at once
                raise RuntimeError("Connection closed by peer [127.0.0.1]:12198")
            time.sleep(0.5)  # the peer's process goes a moment later
            os._exit(1)

    actors = [Rank.remote(), Rank.remote()]
    stopped = []
    refs = [actors[0].step.remote("survivor"), actors[1].step.remote("dies")]
    with pytest.raises(WorkerDiedError, match=r"rank 1 died during train_step") as err:
        wait_all(refs, ["rank 0", "rank 1"], what="train_step", on_failure=lambda: stopped.append(True))
    assert "resumes from its last checkpoint" in str(err.value) and stopped == [True]
    # A worker that raised with no peer dead is still reported as itself.
    refs = [actors[0].step.remote("survivor")]
    with pytest.raises(WorkerDiedError, match=r"(?s)rank 0 failed during train_step:\n.*Connection closed by peer"):
        wait_all(refs, ["rank 0"], what="train_step")

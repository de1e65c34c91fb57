"""Inference engines as Ray actors: any registered backend, driven through the backend protocol.

``EngineActor`` runs inside a Ray worker: it builds its own plugin registry from installed
metadata, looks the backend up by *name*, validates its options (sent as a plain table)
with that backend's own config class, and serves ``generate`` on the actor's event loop
(so concurrent requests still share batches). ``RayBackend`` is what the trainer loop
holds on the driver: it implements ``InferenceBackend`` by spreading requests over the
engines and forwarding weight updates, sleep/wake and shutdown to all of them::

    runtime.configure(RuntimeConfig(mode="ray", train_gpus=2, inference_gpus=1, colocate=False))
    backend = RayBackend("native", NativeBackendConfig(), model=model_cfg, seed=0)
    results = await backend.generate(requests)     # same results as NativeBackend in-process
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from skyrl_core.config.schema import ModelConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.protocols.backend import BackendCapabilities, GenerateRequest, GenerateResult
from skyrl_core.runtime.calls import (
    ActorGroup,
    RayPending,
    WorkerDiedError,
    check_same_plugins,
    import_ray,
    plugin_table,
)

GROUP_TIMEOUT_S = 1800.0  # how long engines wait in the broadcast group's collectives


def worker_env() -> dict[str, Any]:
    """The ``runtime_env`` for skyrl actors: forwards ``SKYRL_LOAD_PLUGINS`` and
    ``SKYRL_EXCLUDE_PLUGINS`` so that workers load the same plugins as the driver (empty when
    unset, to reuse Ray's pooled workers)."""
    env = {k: os.environ[k] for k in ("SKYRL_LOAD_PLUGINS", "SKYRL_EXCLUDE_PLUGINS") if k in os.environ}
    return {"runtime_env": {"env_vars": env}} if env else {}


def set_worker_threads() -> None:
    """Torch intra-op threads = the CPUs Ray assigned to this actor (at least 1)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))


class EngineActor:
    """One inference engine inside a Ray actor (async: ``generate`` calls interleave).

    Args:
        name: the backend's registered name (``[backend] name``).
        options: the backend's options as a plain table (``to_dict`` of its config), or None.
        model: the ``[model]`` section as a plain table.
        seed: the backend's seed.
    """

    def __init__(self, name: str, options: dict[str, Any] | None, model: dict[str, Any], seed: int) -> None:
        from skyrl_core.config.loader import structure, structure_component
        from skyrl_core.plugins import build_registry
        from skyrl_core.specs import Kind

        set_worker_threads()
        registry = build_registry()
        self.plugins = plugin_table(registry)
        component = registry.get(Kind.BACKEND, name, where=f"[backend] name = {name!r} (in a Ray engine)")
        config, issues = structure_component(
            registry, Kind.BACKEND, name, options or {}, ["backend"], ["backend", "name"]
        )
        model_cfg, model_issues = structure(model, ModelConfig, ["model"])
        if issues or model_issues:
            found = "; ".join(str(i) for i in [*issues, *model_issues])
            raise SkyrlError(f"a Ray engine's config classes reject the options the driver sent: {found}")
        self.backend = component.load()(config, model=model_cfg, seed=seed)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="skyrl-engine")
        self._group: Any = None

    async def _run(self, fn: Any, *args: Any) -> Any:
        """Run a blocking call off the actor's event loop (generation keeps going)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def info(self) -> dict[str, Any]:
        """Plugins, capabilities, node and process of this engine."""
        from skyrl_core.runtime.calls import where

        return {"plugins": self.plugins, "capabilities": attrs.asdict(self.backend.capabilities), **where()}

    async def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        return await self.backend.generate(requests)

    async def update_weights(self, named: list[tuple[str, Any]]) -> None:
        await self._run(self.backend.update_weights, named)

    async def load_lora_adapter(self, adapter: Any) -> None:
        """Forward a ``LoraAdapter`` to a backend that declares ``capabilities.lora_adapters``."""
        await self._run(self.backend.load_lora_adapter, adapter)

    async def call(self, method: str) -> None:
        """``reset_prefix_cache``, ``sleep``, ``wake``, ``shutdown`` or ``abort_requests`` of the backend."""
        if method not in ("reset_prefix_cache", "sleep", "wake", "shutdown", "abort_requests"):
            raise ValueError(f"EngineActor.call: {method!r} is not a lifecycle method")
        await self._run(getattr(self.backend, method))

    # -- direct weight transports (see skyrl_core.runtime.weight_sync) -----------------------

    def _reporter(self) -> Any:
        from skyrl_core.protocols.weights import ReportsWeights

        if not isinstance(self.backend, ReportsWeights):
            raise SkyrlError(
                f"{type(self.backend).__name__} does not report the weights it holds (no weight_dtypes()/"
                "weight_checksums()), so they cannot be verified; turn [runtime] verify_weights off"
            )
        return self.backend

    async def weight_dtypes(self) -> dict[str, str]:
        return self._reporter().weight_dtypes()

    async def weight_checksums(self, names: list[str]) -> dict[str, tuple[str, str]]:
        reports = await self._run(self._reporter().weight_checksums, names)
        held: dict[str, tuple[str, str]] = {}
        for _, tensors in reports:  # one engine inside this actor
            held.update(tensors)
        return held

    async def join_sync_group(self, host: str, port: int, rank: int, size: int, timeout_s: float) -> None:
        """Join the weight broadcast group (rank 0 is the trainer)."""
        import torch

        from skyrl_core.runtime.weight_sync import SyncGroup

        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        self._group = await self._run(SyncGroup, host, port, rank, size, device, timeout_s)

    async def receive_broadcast(self, metas: list[Any]) -> None:
        if self._group is None:
            raise RuntimeError("receive_broadcast before join_sync_group")
        named = await self._run(self._group.receive, metas)
        await self._run(self.backend.update_weights, named)

    async def receive_file(self, path: str) -> None:
        from skyrl_core.runtime.weight_sync import read_bucket

        named = await self._run(read_bucket, path)
        await self._run(self.backend.update_weights, named)

    async def receive_ipc(self, metas: list[Any], handles: list[Any]) -> None:
        from skyrl_core.runtime.weight_sync import from_ipc, unpack

        def load() -> None:
            import torch

            flats = [from_ipc(h) for h in handles]
            self.backend.update_weights(unpack(metas, flats))
            torch.cuda.synchronize()

        await self._run(load)

    async def pid(self) -> int:
        return os.getpid()


class RayBackend:
    """``InferenceBackend`` on the driver whose engines are ``EngineActor``s (see the module docstring).

    Args:
        name: the registered backend to run in each engine (``[backend] name``).
        config: its validated options (sent to the engines as a plain table).
        model: ``[model]``.
        seed: seeds requests that carry none, in arrival order, exactly as the in-process
            backends do, so one engine reproduces the in-process results.
        runtime: the Ray runtime (default: ``skyrl_core.runtime.ray_runtime()``).
    """

    capabilities: BackendCapabilities

    def __init__(self, name: str, config: Any, *, model: ModelConfig, seed: int, runtime: Any = None) -> None:
        from skyrl_core.config.render import to_dict
        from skyrl_core.plugins import build_registry
        from skyrl_core.runtime import ray_runtime

        ray = import_ray()
        self.runtime = runtime if runtime is not None else ray_runtime()
        self.name = name
        slots = self.runtime.engine_slots()
        actor_cls = ray.remote(EngineActor)
        options = to_dict(config) if config is not None else None
        actors = [
            actor_cls.options(**slot.options(), **worker_env()).remote(name, options, to_dict(model), seed)
            for slot in slots
        ]
        for actor in actors:
            self.runtime.track(actor)
        self.engines = ActorGroup(actors, [f"inference engine {e} ({name})" for e in range(len(actors))],
                                  f"the {name} inference engines")
        infos = self.engines.call("info")
        tables = {n: i["plugins"] for n, i in zip(self.engines.names, infos, strict=True)}
        check_same_plugins(plugin_table(build_registry()), tables)
        inner = BackendCapabilities(**{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in infos[0]["capabilities"].items()})
        self.capabilities = attrs.evolve(inner, weight_transports=("object_store", *self.direct_transports()))
        self.nodes = [(i["ip"], i["pid"]) for i in infos]
        self._seed_rng = random.Random(seed)
        self._in_flight = [0] * len(actors)
        self._closed = False
        self.runtime.register(engines=self)

    # -- generate ---------------------------------------------------------------------------

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Seed unseeded requests, spread them over the engines (fewest samples in flight first)."""
        if self._closed:
            raise RuntimeError("RayBackend.generate: the backend was shut down; create a new one.")
        self.engines.check()
        self.runtime.enter("generate")
        seeded = [
            r if r.params.seed is not None
            else attrs.evolve(r, params=attrs.evolve(r.params, seed=self._seed_rng.getrandbits(63)))
            for r in requests
        ]
        if not seeded:
            return []
        parts: dict[int, list[int]] = {}
        for i, request in enumerate(seeded):
            e = min(range(len(self._in_flight)), key=lambda k: self._in_flight[k])
            self._in_flight[e] += request.params.n
            parts.setdefault(e, []).append(i)
        try:
            outs = await asyncio.gather(*[self._generate_on(e, [seeded[i] for i in idx]) for e, idx in parts.items()])
        finally:
            for e, idx in parts.items():
                self._in_flight[e] -= sum(seeded[i].params.n for i in idx)
        results: list[Any] = [None] * len(seeded)
        for (_, idx), out in zip(parts.items(), outs, strict=True):
            for i, result in zip(idx, out, strict=True):
                results[i] = result
        return results

    async def _generate_on(self, e: int, requests: list[GenerateRequest]) -> list[GenerateResult]:
        ray = import_ray()
        try:
            return await self.engines.actors[e].generate.remote(requests)
        except ray.exceptions.RayActorError as exc:
            self.engines.stop(f"engine {e} died")
            raise WorkerDiedError(
                f"{self.engines.names[e]} died during generate: {exc}. Check its Ray log (out of memory?), then "
                "restart: the run resumes from its last checkpoint."
            ) from exc

    # -- weights ----------------------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Send ``(name, tensor)`` pairs to every engine through the object store (one copy shared by all)."""
        ray = import_ray()
        bucket = [(name, tensor.detach().cpu()) for name, tensor in named_tensors]
        ref = ray.put(bucket)
        self.engines.call("update_weights", ref)

    def load_lora_adapter(self, adapter: Any) -> None:
        """Hand a LoRA adapter (``LoraAdapter``) to every engine through the object store
        (used only when the engines declare ``capabilities.lora_adapters``)."""
        self.engines.call("load_lora_adapter", import_ray().put(adapter))

    def weight_dtypes(self) -> dict[str, str]:
        """``{name: dtype}`` of engine 0's weights (for checksums in the engines' dtype)."""
        return self.engines.wait([self.engines.actors[0].weight_dtypes.remote()], what="weight_dtypes")[0]

    def weight_checksums(self, names: list[str]) -> list[tuple[str, dict[str, tuple[str, str]]]]:
        """``(engine label, {name: (dtype, checksum)})`` for every engine."""
        held = self.engines.call("weight_checksums", names)
        return list(zip(self.engines.names, held, strict=True))

    # -- the engine side of direct weight transfers (skyrl_core.protocols.weights.EngineGroup) --

    def direct_transports(self) -> tuple[str, ...]:
        """``broadcast`` and ``disk`` always; ``cuda_ipc`` when the engines have GPUs."""
        return ("broadcast", "disk", *(("cuda_ipc",) if self.runtime.gpu else ()))

    def engine_names(self) -> list[str]:
        return list(self.engines.names)

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> RayPending:
        """Every engine joins the broadcast group at ``host:port`` (engine ``e`` as rank ``first_rank + e``)."""
        per_actor = [(host, port, first_rank + e, world_size, GROUP_TIMEOUT_S) for e in range(len(self.engines))]
        return RayPending(self.engines, self.engines.submit("join_sync_group", per_actor=per_actor),
                          "forming the weight broadcast group")

    def receive_bucket(
        self, metas: Sequence[Any], transport: str, *, path: str | None = None, handles: Sequence[Any] = ()
    ) -> RayPending:
        """Every engine receives one bucket by ``transport`` and loads it (see ``EngineActor``)."""
        metas = list(metas)
        if transport == "broadcast":
            refs = self.engines.submit("receive_broadcast", metas)
        elif transport == "disk":
            refs = self.engines.submit("receive_file", path)
        elif transport == "cuda_ipc":  # engine e shares a GPU with source rank e (colocated bundles)
            per_engine = [(metas, handles[e % len(handles)]) for e in range(len(self.engines))]
            refs = self.engines.submit("receive_ipc", per_actor=per_engine)
        else:
            raise ValueError(f"unknown weight transport {transport!r}")
        return RayPending(self.engines, refs, f"weight sync ({transport})")

    def reset_prefix_cache(self) -> None:
        self.engines.call("call", "reset_prefix_cache")

    def abort_requests(self) -> None:
        """Every engine ends its queued and running requests now (finish reason 'abort', partial
        tokens kept). Needs an engine backend that declares ``capabilities.abort``."""
        if not self.capabilities.abort:
            raise RuntimeError(f"the {self.name} backend cannot abort requests (capabilities.abort is false)")
        self.engines.call("call", "abort_requests")

    def sleep(self) -> None:
        """Every engine releases accelerator memory (a no-op for backends that cannot)."""
        self.engines.call("call", "sleep")

    def wake(self) -> None:
        self.engines.call("call", "wake")

    def shutdown(self) -> None:
        """Shut every engine's backend down, then end the actors."""
        if self._closed:
            return
        self._closed = True
        if self.engines.broken is None:
            try:
                self.engines.call("call", "shutdown")
            except Exception:
                pass
        self.engines.stop("shut down")

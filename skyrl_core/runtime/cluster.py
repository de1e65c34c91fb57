"""The Ray runtime: connect to (or start) a cluster, check its resources, place actors.

Placement (``[runtime]``):

* **colocated** (``colocate = true``): one placement group of ``train_gpus`` bundles.
  Training worker ``r`` and inference engine ``r`` share bundle ``r`` (half of its GPU
  and CPU each, so Ray puts both on the same GPU) and take turns: before generation the
  trainer offloads and the engines wake; before training the engines sleep and the
  trainer onloads (``enter``). Engines: ``inference_gpus`` (0 = one per training GPU).
* **split** (``colocate = false``): a group of ``train_gpus`` bundles for training and
  one of ``inference_gpus`` bundles for the engines, each actor with a whole GPU.

On a cluster without GPUs every "GPU" is a CPU worker (bundles of one CPU): that is
how the tests run FSDP2 with gloo. Bundles are packed onto as few nodes as possible and
spill over to other nodes of an existing cluster (multi-node).
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from skyrl_core.config.schema import RuntimeConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.runtime.calls import import_ray

PLACEMENT_TIMEOUT_S = 120.0
Phase = Literal["train", "generate"]


def engine_count(cfg: RuntimeConfig) -> int:
    """How many inference engines ``[runtime]`` asks for (colocated 0 = one per training GPU)."""
    if cfg.colocate and cfg.inference_gpus == 0:
        return cfg.train_gpus
    return cfg.inference_gpus


def devices_needed(cfg: RuntimeConfig) -> int:
    """GPUs (or CPU workers on a GPU-less cluster) the placement reserves."""
    return cfg.train_gpus if cfg.colocate else cfg.train_gpus + cfg.inference_gpus


def check_resources(cfg: RuntimeConfig, resources: Mapping[str, float], *, where: str) -> None:
    """Raise a ``SkyrlError`` when ``[runtime]`` cannot be placed on a cluster with ``resources``.

    Args:
        cfg: the ``[runtime]`` section.
        resources: ``ray.cluster_resources()`` (totals over all nodes).
        where: how to name the cluster in messages (e.g. ``"the Ray cluster at 'auto'"``).
    """
    problems = []
    if cfg.colocate and cfg.inference_gpus > cfg.train_gpus:
        problems.append(
            f"colocated engines share the training GPUs, so inference_gpus ({cfg.inference_gpus}) must be <= "
            f"train_gpus ({cfg.train_gpus}); use 0 for one engine per training GPU, or set colocate = false"
        )
    if not cfg.colocate and cfg.inference_gpus == 0:
        problems.append("colocate = false needs inference_gpus >= 1 (the engines' own GPUs)")
    gpus = float(resources.get("GPU", 0.0))
    need = devices_needed(cfg)
    layout = (
        f"train_gpus = {cfg.train_gpus}, colocated"
        if cfg.colocate
        else f"train_gpus = {cfg.train_gpus} + inference_gpus = {cfg.inference_gpus}, split"
    )
    if gpus > 0 and need > gpus:
        problems.append(
            f"{layout} needs {need} GPUs, but {where} has {gpus:g}. Lower train_gpus / inference_gpus, "
            "colocate engines with training (colocate = true), or add GPU nodes (`ray start --address=<head>:6379`)"
        )
    cpus = float(resources.get("CPU", 0.0))
    if gpus == 0 and need > cpus:
        problems.append(
            f"{layout} needs {need} CPU workers (the cluster has no GPUs, so each 'GPU' is one CPU worker), but "
            f"{where} has {cpus:g} CPUs. Lower train_gpus / inference_gpus or add nodes"
        )
    if problems:
        raise SkyrlError("[runtime]: " + "; ".join(problems) + ".")


@attrs.frozen
class Slot:
    """Where one actor goes: a bundle of a placement group and its share of that bundle."""

    group: Any
    bundle: int
    num_gpus: float
    num_cpus: float

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``ActorClass.options(...)``."""
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return {
            "num_gpus": self.num_gpus,
            "num_cpus": self.num_cpus,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=self.group, placement_group_bundle_index=self.bundle
            ),
        }


class RayRuntime:
    """A connection to a Ray cluster plus this run's placement groups and actors.

    Use ``skyrl_core.runtime.ray_runtime()`` rather than constructing it: Ray is
    process-global.

    Attributes:
        config: the ``[runtime]`` section.
        gpu: whether actors get GPUs (the cluster has any); otherwise they are CPU workers.
        resources: ``ray.cluster_resources()`` at connection time.
    """

    def __init__(self, cfg: RuntimeConfig) -> None:
        ray = import_ray()
        self.config = cfg
        self.started_cluster = False
        if not ray.is_initialized():
            self._connect(ray)
        where = f"the Ray cluster at {cfg.address!r}" if cfg.address else "the local Ray cluster"
        self.resources = dict(ray.cluster_resources())
        self.gpu = float(self.resources.get("GPU", 0.0)) > 0
        check_resources(cfg, self.resources, where=where)
        need, cores = devices_needed(cfg), os.cpu_count() or 1
        if not self.gpu and need > cores:
            print(
                f"warning: [runtime] asks for {need} devices (train_gpus + inference_gpus) but {where} has no GPU: "
                f"running {need} CPU workers (gloo) on {cores} cores, which is slow. This mode is meant for tests; "
                "on GPUs each worker gets its own device.",
                file=sys.stderr,
            )
        self._groups: dict[str, Any] = {}
        self._actors: list[Any] = []
        self._trainer: Any = None
        self._engines: Any = None
        self.phase: Phase | None = None

    def _connect(self, ray: Any) -> None:
        cfg = self.config
        try:
            if cfg.address:
                ray.init(address=cfg.address, log_to_driver=True)
            else:
                need = devices_needed(cfg) + 1
                ray.init(num_cpus=max(os.cpu_count() or 1, need), include_dashboard=False, log_to_driver=True)
                self.started_cluster = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SkyrlError(
                f"[runtime] address = {cfg.address!r}: could not connect to a Ray cluster: {exc}. Start one with "
                "`ray start --head` on this node (then address = 'auto'), give the head's 'host:6379', or leave "
                "address unset to start a local cluster."
            ) from exc

    # -- placement --------------------------------------------------------------------------

    def _group(self, name: str, size: int) -> Any:
        group = self._groups.get(name)
        if group is not None:
            return group
        ray = import_ray()
        from ray.util.placement_group import placement_group

        bundle = {"GPU": 1.0, "CPU": 1.0} if self.gpu else {"CPU": 1.0}
        bundles = [dict(bundle) for _ in range(size)]
        group = placement_group(bundles, strategy="PACK", name=f"skyrl-{name}-{os.getpid()}")
        ready, _ = ray.wait([group.ready()], timeout=PLACEMENT_TIMEOUT_S)
        if not ready:
            ray.util.remove_placement_group(group)
            raise SkyrlError(
                f"[runtime]: could not reserve {size} x {bundle} for {name} within {PLACEMENT_TIMEOUT_S:.0f} s. "
                f"The cluster has {self.resources} in total and {dict(ray.available_resources())} free: other "
                "jobs or actors hold the rest. Stop them, or lower train_gpus / inference_gpus."
            )
        self._groups[name] = group
        return group

    def train_slots(self, n: int) -> list[Slot]:
        """Slots for ``n`` training workers (rank ``r`` gets bundle ``r``)."""
        cfg = self.config
        if n > cfg.train_gpus:
            raise SkyrlError(f"[runtime] train_gpus = {cfg.train_gpus}, but {n} training workers were requested")
        share = 0.5 if cfg.colocate else 1.0
        group = self._group("shared" if cfg.colocate else "train", cfg.train_gpus)
        return [self._slot(group, r, share) for r in range(n)]

    def engine_slots(self) -> list[Slot]:
        """Slots for the inference engines (``engine_count`` of them)."""
        cfg = self.config
        n = engine_count(cfg)
        if cfg.colocate:
            group = self._group("shared", cfg.train_gpus)
            return [self._slot(group, e, 0.5) for e in range(n)]
        group = self._group("inference", cfg.inference_gpus)
        return [self._slot(group, e, 1.0) for e in range(n)]

    def _slot(self, group: Any, bundle: int, share: float) -> Slot:
        if self.gpu:
            return Slot(group, bundle, num_gpus=share, num_cpus=share)
        return Slot(group, bundle, num_gpus=0.0, num_cpus=share)

    def track(self, actor: Any) -> None:
        """Kill ``actor`` at ``shutdown`` (kept as a weak reference)."""
        self._actors.append(weakref.ref(actor))

    # -- colocation -------------------------------------------------------------------------

    def register(self, *, trainer: Any = None, engines: Any = None) -> None:
        """Name the strategy (``offload``/``onload``) and the backend (``sleep``/``wake``) that
        time-share the GPUs when colocated (weak references: they may be freed any time)."""
        if trainer is not None:
            self._trainer = weakref.ref(trainer)
        if engines is not None:
            self._engines = weakref.ref(engines)

    def enter(self, phase: Phase) -> None:
        """Switch the shared GPUs to ``phase`` when colocated (no-op otherwise or if already there).

        ``generate``: the trainer offloads, then the engines wake. ``train``: the engines
        sleep, then the trainer onloads. Strategy and backend call this themselves at the
        start of their work, so the training loop needs no placement logic.
        """
        if not self.config.colocate or phase == self.phase:
            return
        trainer = self._trainer() if self._trainer is not None else None
        engines = self._engines() if self._engines is not None else None
        if phase == "generate":
            if trainer is not None:
                trainer.offload()
            if engines is not None:
                engines.wake()
        else:
            if engines is not None:
                engines.sleep()
            if trainer is not None:
                trainer.onload()
        self.phase = phase

    # -- shutdown ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Kill tracked actors, remove placement groups; disconnect if we started the cluster."""
        try:
            import ray
        except ImportError:  # pragma: no cover
            return
        if not ray.is_initialized():
            return
        for ref in self._actors:
            actor = ref()
            if actor is not None:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:
                    pass
        self._actors.clear()
        for group in self._groups.values():
            try:
                ray.util.remove_placement_group(group)
            except Exception as exc:
                print(f"warning: could not remove a placement group: {exc}", file=sys.stderr)
        self._groups.clear()
        if self.started_cluster:
            ray.shutdown()


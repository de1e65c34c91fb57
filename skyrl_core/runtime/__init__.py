"""Where the pieces of a run execute: ``[runtime] mode = "local"`` or ``"ray"``.

``local`` is one process: the strategy and the backend are plain objects and weight sync
is an in-process copy. ``ray`` keeps the trainer loop a single controller (the driver)
and runs the training workers (``fsdp2``) and the inference engines as Ray actors placed
with placement groups, colocated on the same GPUs or split (see docs/scaling.md).

Ray itself is process-global (one ``ray.init`` per process), so the runtime is too: the
trainer calls ``configure(cfg.runtime)`` once per run, and components that need Ray ask
for ``ray_runtime()``, which connects (or starts a local cluster) on first use. Nothing
here imports Ray or torch until it is needed::

    from skyrl_core import runtime
    runtime.configure(cfg.runtime)          # cheap: records the [runtime] section
    rt = runtime.ray_runtime()              # connects, validates resources
    ...
    runtime.shutdown()                      # kills this run's actors, frees placement groups
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyrl_core.config.schema import RuntimeConfig

if TYPE_CHECKING:
    from skyrl_core.runtime.cluster import RayRuntime

_config: RuntimeConfig | None = None
_active: RayRuntime | None = None


def configure(cfg: RuntimeConfig) -> None:
    """Record the ``[runtime]`` section for this process (a later call replaces it).

    An active Ray runtime built from a different section is shut down first, so that a
    second run in the same process (tests, notebooks) gets the placement it asked for.
    """
    global _config
    if _active is not None and _active.config != cfg:
        shutdown()
    _config = cfg


def configured() -> RuntimeConfig:
    """The recorded ``[runtime]`` section (defaults when ``configure`` was never called)."""
    return _config if _config is not None else RuntimeConfig()


def ray_runtime() -> RayRuntime:
    """The process's Ray runtime, connecting on first use with the configured section.

    Raises:
        SkyrlError: Ray is not installed, the cluster cannot be reached, or it lacks the
            resources ``[runtime]`` asks for.
    """
    global _active
    if _active is None:
        from skyrl_core.runtime.cluster import RayRuntime

        _active = RayRuntime(configured())
    return _active


def active() -> RayRuntime | None:
    """The Ray runtime if one was started in this process, else None."""
    return _active


def shutdown() -> None:
    """Kill the actors this process started, remove its placement groups, and disconnect
    from Ray if this process started the cluster. Safe to call when nothing is active."""
    global _active
    if _active is not None:
        rt, _active = _active, None
        rt.shutdown()

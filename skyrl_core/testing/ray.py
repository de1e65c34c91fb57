"""Ray in tests: one local cluster per test session, and backends whose engines run in Ray actors.

The ``ray_cluster`` fixture (``skyrl_core.testing.pytest_plugin``) starts a local cluster once
per pytest session (4 logical CPUs, no dashboard, auth off) and shuts it down at the end;
every test that needs Ray shares it. Between tests, ``release_runtime()`` kills the actors
and placement groups a test left behind, so the next one starts clean.

::

    def test_engine_in_an_actor(ray_cluster, model_cfg):
        with ray_backend("native", None, model=model_cfg, seed=0) as backend:
            results = generate(backend, requests)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Logical CPUs of the session's cluster: 2 training workers + engines fit.
SESSION_CPUS = 4


def start_cluster(num_cpus: int = SESSION_CPUS) -> Any:
    """Start (or join the already started) local Ray cluster of this process; return ``ray``."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray writes an auth token under $HOME
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return ray


def release_runtime() -> None:
    """Kill the actors and placement groups skyrl started in this process (the cluster stays)."""
    from skyrl_core import runtime
    from skyrl_core.config.schema import RuntimeConfig

    runtime.shutdown()
    runtime.configure(RuntimeConfig())


@contextmanager
def ray_backend(name: str, config: Any, *, model: Any, seed: int, runtime_config: Any = None) -> Iterator[Any]:
    """The backend ``name`` with its engines in Ray actors, as ``[runtime] mode = "ray"`` builds it
    (default placement: one engine on its own CPU worker); shut down, with its actors, on exit."""
    from skyrl_core import runtime
    from skyrl_core.config.schema import RuntimeConfig
    from skyrl_core.runtime.engine import RayBackend

    start_cluster()
    runtime.configure(runtime_config or RuntimeConfig(mode="ray", train_gpus=1, inference_gpus=1, colocate=False))
    backend = None
    try:
        backend = RayBackend(name, config, model=model, seed=seed)
        yield backend
    finally:
        if backend is not None:
            backend.shutdown()
        release_runtime()

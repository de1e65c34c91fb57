"""pytest fixtures shipped with skyrl-core (auto-loaded through the ``pytest11`` entry point)."""

from __future__ import annotations

import os

import pytest

from skyrl_core.testing.helpers import fresh_registry

#: The markers every skyrl test suite can use (core and plugins alike); the fast inner loop is
#: ``pytest -m "not slow and not ray and not engine"`` (see README).
MARKERS = {
    "slow": "takes more than ~5 s (end-to-end runs, wheels, subprocesses); still runs in CI",
    "ray": "needs a Ray cluster (tests using the `ray_cluster` fixture get this marker automatically)",
    "engine": "needs a real inference engine package (vLLM, SGLang): runs in that plugin's CI stage",
    "gpu": "needs a CUDA GPU (skipped elsewhere)",
    "compiles": "compiles with torch.compile (Inductor); under pytest-xdist a test of the Ray group runs after "
    "the group's other tests, so that it finds the graphs other tests compiled in Inductor's on-disk cache",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    _share_cores_between_xdist_workers()


def _xdist_workers() -> int:
    """How many pytest-xdist workers run this session (0 outside a worker process)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return 0
    return max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))


def _share_cores_between_xdist_workers() -> None:
    """Under ``pytest -n N``, each worker (and the processes its tests start: gloo ranks, CLI runs,
    inductor's compile workers) gets cores/N threads instead of every process taking all cores.

    Oversubscribed OpenMP threads spin against each other: on 2 cores with 2 workers, one gloo
    test with torch.compile took 236 s instead of 23 s. A value the caller set is kept.
    """
    workers = _xdist_workers()
    if workers < 2:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ.setdefault("MKL_NUM_THREADS", threads)
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", threads)
    import torch

    torch.set_num_threads(int(os.environ.setdefault("OMP_NUM_THREADS", threads)))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the session's Ray cluster is a ``ray`` test (and a slow one to start).

    Under ``pytest -n N --dist loadgroup`` (scripts/test.sh), the tests that share the session's
    Ray cluster go to one worker (one cluster, not one per worker), and slow tests are handed out
    first so that no long test starts last and leaves the other workers idle.
    """
    for item in items:
        if "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
    if _xdist_workers() < 2:
        return
    for item in items:
        if item.get_closest_marker("ray") and "ray_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("ray-cluster"))
    def order(item: pytest.Item) -> tuple[int, int]:
        first = 0 if item.get_closest_marker("slow") or item.get_closest_marker("ray") else 1
        # A compiling test of the Ray group goes last in it: by then the other worker has run
        # tests/strategies/test_compile.py (slow, so handed out first), whose decoder-layer graphs
        # Inductor kept on disk; cold, the fsdp2 compile test took 56 s alone, warm 41 s.
        late = 1 if item.get_closest_marker("compiles") and "ray_cluster" in getattr(item, "fixturenames", ()) else 0
        return first, late

    items.sort(key=order)


@pytest.fixture
def skyrl_registry():
    """A fresh registry with the builtins and every installed plugin."""
    return fresh_registry(entry_points=True)


#: The tiny model every test shares: small enough that a forward pass takes milliseconds.
TINY_TEST_MODEL = {"arch": "qwen2", "hidden_size": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate_size": 128}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Qwen2 model + BPE tokenizer folder (hidden 64, 2 layers), built once per session.

    Treat it as read-only; copy it (``shutil.copytree``) before changing files in it.
    """
    from skyrl_core.config.schema import TinyModelConfig
    from skyrl_core.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", TinyModelConfig(**TINY_TEST_MODEL))


@pytest.fixture
def tiny_model_cfg(tiny_model_dir):
    """A ``[model]`` section (``ModelConfig``) pointing at ``tiny_model_dir``, on CPU, float32."""
    from skyrl_core.config.schema import ModelConfig

    return ModelConfig(path=str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster shared by every test of the session (``skyrl_core.testing.ray``).

    Started on first use and shut down when the session ends; each test using it gets the
    cluster with no skyrl actors left over from the tests before it.
    """
    pytest.importorskip("ray")
    from skyrl_core.testing.ray import release_runtime, start_cluster

    ray = start_cluster()
    yield ray
    release_runtime()
    ray.shutdown()


@pytest.fixture(autouse=True)
def _release_ray_actors(request):
    """After a test that used the session's Ray cluster, kill the actors it left behind."""
    yield
    if "ray_cluster" in request.fixturenames:
        from skyrl_core.testing.ray import release_runtime

        release_runtime()

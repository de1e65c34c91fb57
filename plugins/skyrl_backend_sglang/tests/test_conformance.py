"""The core backend conformance suite against a real SGLang CPU engine (one engine for the module).

Engine mode, ``seeded_sampling = "serial"`` (the CPU default): greedy output and log-probs
match transformers, sampled log-probs match the contract's filtered distribution, stops
are exact, seeds reproduce whatever else is in flight, weight updates round-trip.
"""

from __future__ import annotations

from conftest import needs_sglang

from skyrl_core.testing.conformance import BackendConformance

pytestmark = needs_sglang


class TestSGLangEngine(BackendConformance):
    # float32 on both sides; SGLang's torch_native attention vs transformers' sdpa differ by rounding only.
    logprob_atol = 1e-4

    def make_backend(self, model, seed):
        from skyrl_backend_sglang.backend import SGLangBackend
        from skyrl_backend_sglang.config import SGLangBackendConfig

        return SGLangBackend(SGLangBackendConfig(), model=model, seed=seed)

"""Remote mode: a real ``python -m sglang.launch_server`` on loopback, started and stopped here.

The server runs in its own process (killed by its PID at the end, nothing else); the
backend drives it over SGLang's native HTTP API. The conformance suite runs against it
(weight updates travel as safetensors files + ``/update_weights_from_disk``), plus the
control endpoints: health, model info, cache flush, memory release/resume, and the check
that the server was started with the flags the backend needs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import needs_sglang

from skyrl_core.api import ModelConfig
from skyrl_core.testing.conformance import BackendConformance, make_unit_scale_copy

pytestmark = needs_sglang


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A launch_server process on 127.0.0.1 (its log in ``log``)."""

    def __init__(self, model_dir: Path, log: Path, **options) -> None:
        from skyrl_backend_sglang.config import SGLangBackendConfig
        from skyrl_backend_sglang.server_args import server_command

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = server_command(SGLangBackendConfig(**options), ModelConfig(path=str(model_dir), device="cpu"), seed=0,
                             port=self.port)
        self.proc = subprocess.Popen([sys.executable, *cmd, "--log-level", "error"], stdout=log.open("w"),
                                     stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # only its PID; SGLang's server ends its own children
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return make_unit_scale_copy(tiny_model_dir, tmp_path_factory.mktemp("server") / "model")


@pytest.fixture(scope="module")
def server(server_model_dir, tmp_path_factory):
    srv = Server(server_model_dir, tmp_path_factory.mktemp("server-log") / "server.log")
    yield srv
    srv.stop()
    assert srv.proc.returncode is not None


class TestSGLangServer(BackendConformance):
    logprob_atol = 1e-4

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_model_dir(cls, server_model_dir):
        return server_model_dir

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, server, conformance_model_dir):
        backend = cls().make_backend(ModelConfig(path=str(conformance_model_dir), device="cpu"), seed=1234,
                                     url=server.url)
        yield backend
        backend.shutdown()

    def make_backend(self, model, seed, url=None):
        from skyrl_backend_sglang.backend import SGLangBackend
        from skyrl_backend_sglang.config import SGLangBackendConfig

        return SGLangBackend(SGLangBackendConfig(mode="server", url=url), model=model, seed=seed)

    # -- the control endpoints ------------------------------------------------------------------

    def test_health_model_info_and_version(self, backend, server, conformance_model_dir):
        assert backend.client.health()
        info = backend.client.model_info()
        # model_path follows update_weights_from_disk: the served folder, or the plugin's last update folder
        assert info["is_generation"] and (info["model_path"] == str(conformance_model_dir)
                                          or info["model_path"].endswith("skyrl-sglang-update"))
        assert backend.version not in ("", "unknown")
        assert backend.capabilities.weight_transports == ("disk",)

    def test_flush_sleep_wake(self, backend, ref, prompts):
        from skyrl_core.api import GenerateRequest, SamplingParams
        from skyrl_core.testing.conformance import generate

        request = GenerateRequest(prompts[0], SamplingParams(max_new_tokens=8, temperature=0))
        (before,) = generate(backend, [request])
        backend.reset_prefix_cache()
        backend.sleep()  # release/resume: no-ops on CPU (no memory saver), but the calls must succeed
        backend.wake()
        (after,) = generate(backend, [request])
        assert after.completions[0].token_ids == before.completions[0].token_ids

    def test_tensor_transport_over_http(self, backend, ref, prompts):
        """Same host: /update_weights_from_tensor with multiprocessing handles instead of files."""
        import torch

        from skyrl_core.api import GenerateRequest, SamplingParams
        from skyrl_core.testing.conformance import generate

        request = GenerateRequest(prompts[1], SamplingParams(max_new_tokens=10, temperature=0))
        (before,) = generate(backend, [request])
        original = {n: t.detach().clone() for n, t in ref.model.state_dict().items()}
        gen = torch.Generator().manual_seed(3)
        backend.weights.transport = "tensor"
        try:
            backend.update_weights((n, t + torch.randn(t.shape, generator=gen) * t.std()) for n, t in original.items()
                                   if t.dim() == 2)
            backend.reset_prefix_cache()
            assert generate(backend, [request])[0].completions[0].token_ids != before.completions[0].token_ids
            backend.update_weights(original.items())
            backend.reset_prefix_cache()
            assert generate(backend, [request])[0].completions[0].token_ids == before.completions[0].token_ids
        finally:
            backend.weights.transport = "disk"

    def test_server_without_needed_flags_is_a_clear_error(self, server, conformance_model_dir):
        from skyrl_backend_sglang.backend import SGLangBackend
        from skyrl_backend_sglang.config import SGLangBackendConfig

        from skyrl_core.api import SkyrlError

        # The fixture's server runs one sequence at a time ('serial'); 'engine' seeding needs deterministic inference.
        with pytest.raises(SkyrlError, match="seeded_sampling = 'engine'"):
            SGLangBackend(SGLangBackendConfig(mode="server", url=server.url, seeded_sampling="engine"),
                          model=ModelConfig(path=str(conformance_model_dir), device="cpu"), seed=0)

    def test_unreachable_server_is_a_clear_error(self, conformance_model_dir):
        from skyrl_backend_sglang.backend import SGLangBackend
        from skyrl_backend_sglang.config import SGLangBackendConfig
        from skyrl_backend_sglang.http_client import ServerError

        url = f"http://127.0.0.1:{free_port()}"
        start = time.monotonic()
        with pytest.raises(ServerError, match="not healthy"):
            SGLangBackend(SGLangBackendConfig(mode="server", url=url, startup_timeout_s=1),
                          model=ModelConfig(path=str(conformance_model_dir), device="cpu"), seed=0)
        assert time.monotonic() - start < 30

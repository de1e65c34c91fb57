"""Every error message quoted in docs/ (blocks marked ``<!-- error: ID -->``) is emitted by the code.

Each scenario below makes the mistake the page describes and returns what the user sees
(the ``skyrl`` command's output, or the message of the exception it would print). The quoted
text must appear in it; ``…`` in a quote stands for text that varies, and the pieces around
it must appear in order.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from docs_support import REPO, all_blocks

from skyrl_core.cli import main
from skyrl_core.errors import SkyrlError

ERROR_BLOCKS = [b for b in all_blocks() if b.marker and b.marker.startswith("error ")]
TINY_MODEL = (
    '[model]\npath = "runs/tiny"\ndevice = "cpu"\n[model.tiny]\nhidden_size = 32\nlayers = 1\nintermediate_size = 64\n'
)
SCENARIOS: dict[str, Callable[..., str]] = {}


def scenario(name: str):
    def register(fn):
        SCENARIOS[name] = fn
        return fn

    return register


def skyrl(capsys, *argv: str) -> str:
    """Run the ``skyrl`` command in-process; return stdout + stderr."""
    capsys.readouterr()
    main(list(argv))
    out = capsys.readouterr()
    return out.out + out.err


def write(name: str, text: str) -> str:
    Path(name).write_text(text)
    return name


# -- configuration ---------------------------------------------------------------------------


@scenario("unknown-key")
def _unknown_key(capsys, monkeypatch):
    return skyrl(capsys, "config", "validate", write("k.toml", '[model]\npath = "m"\n[trainer]\nprompts_per_stp = 8\n'))


@scenario("unknown-component")
def _unknown_component(capsys, monkeypatch):
    text = '[model]\npath = "m"\n[algorithm.advantage]\nname = "grpoo"\n'
    return skyrl(capsys, "config", "validate", write("c.toml", text))


@scenario("env-not-installed")
def _env_not_installed(capsys, monkeypatch):
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", "")  # no third-party plugin: as if skyrl-env-sql were not installed
    text = '[model]\npath = "m"\n[data]\ndefault_env_class = "text2sql"\n'
    return skyrl(capsys, "config", "validate", write("e.toml", text))


@scenario("backend-not-installed")
def _backend_not_installed(capsys, monkeypatch):
    monkeypatch.setenv("SKYRL_LOAD_PLUGINS", "")
    return skyrl(capsys, "config", "validate", write("b.toml", '[model]\npath = "m"\n[backend]\nname = "vllm"\n'))


@scenario("override-format")
def _override_format(capsys, monkeypatch):
    return skyrl(capsys, "config", "validate", write("o.toml", '[model]\npath = "m"\n'), "trainer.lr", "1e-6")


@scenario("capped-report")
def _capped_report(capsys, monkeypatch):
    stray = "".join(f"stray_{i} = {i}\n" for i in range(300))
    return skyrl(capsys, "config", "validate", write("many.toml", '[model]\npath = "m"\n[trainer]\n' + stray))


@scenario("value-range")
def _value_range(capsys, monkeypatch):
    return skyrl(capsys, "config", "validate", write("r.toml", '[run]\nseed = 4294967296\n[model]\npath = "m"\n'))


@scenario("empty-string")
def _empty_string(capsys, monkeypatch):
    return skyrl(capsys, "config", "validate", write("e.toml", '[model]\npath = ""\n'))


@scenario("table-expected")
def _table_expected(capsys, monkeypatch):
    return skyrl(capsys, "config", "validate", write("t.toml", '[model]\npath = "m"\n[[trainer]]\nsteps = 2\n'))


@scenario("duplicate-key")
def _duplicate_key(capsys, monkeypatch):
    text = '[model]\npath = "m"\n[trainer]\nlr = 1e-6\nlr = 2e-6\n'
    return skyrl(capsys, "config", "validate", write("d.toml", text))


@scenario("not-utf8")
def _not_utf8(capsys, monkeypatch):
    Path("u.toml").write_bytes(b'[model]\npath = "m"  # caf\xe9 model\n')
    return skyrl(capsys, "config", "validate", "u.toml")


@scenario("too-deep")
def _too_deep(capsys, monkeypatch):
    text = '[model]\npath = "m"\n[data.generate_options]\nx = ' + "[" * 40 + "]" * 40 + "\n"
    return skyrl(capsys, "config", "validate", write("n.toml", text))


@scenario("toml-syntax")
def _toml_syntax(capsys, monkeypatch):
    return skyrl(capsys, "config", "validate", write("s.toml", '[model\npath = "m"\n'))


@scenario("max-new-tokens")
def _max_new_tokens(capsys, monkeypatch):
    path = write("n.toml", '[model]\npath = "m"\n')
    return skyrl(capsys, "config", "validate", path, "generator.max_new_tokens=5000")


@scenario("minibatch-divides")
def _minibatch(capsys, monkeypatch):
    path = write("mb.toml", '[model]\npath = "m"\n[trainer]\nprompts_per_step = 64\n')
    return skyrl(capsys, "config", "validate", path, "trainer.prompts_per_minibatch=24")


# -- plugins ---------------------------------------------------------------------------------


def _fixture_sites(monkeypatch, *sites: str) -> None:
    """Put tests/fixtures/dists/<site> on sys.path: their entry points become visible."""
    monkeypatch.delenv("SKYRL_LOAD_PLUGINS", raising=False)
    for site in sites:
        monkeypatch.syspath_prepend(str(REPO / "tests" / "fixtures" / "dists" / site))
    importlib.invalidate_caches()


@scenario("plugin-failed")
def _plugin_failed(capsys, monkeypatch):
    _fixture_sites(monkeypatch, "broken")
    return skyrl(capsys, "plugins")


@scenario("plugin-conflict")
def _plugin_conflict(capsys, monkeypatch):
    _fixture_sites(monkeypatch, "dup_b", "dup_a")  # the last prepended is found first
    toml = '[model]\npath = "m"\n[algorithm.advantage]\nname = "t_dup"\n'  # selects the ambiguous name
    return skyrl(capsys, "config", "validate", write("p.toml", toml))


@scenario("plugin-rejected-input")
def _plugin_rejected_input(capsys, monkeypatch):
    _fixture_sites(monkeypatch, "raises")
    return skyrl(capsys, "data", "prepare", "r_prep", "--out", "d", "--words", "alpha")


@scenario("plugin-check-raised")
def _plugin_check_raised(capsys, monkeypatch):
    _fixture_sites(monkeypatch, "raises")
    return skyrl(capsys, "config", "validate", write("r.toml", '[model]\npath = "m"\n[r_section]\nratio = 2.0\n'))


# -- models and devices ----------------------------------------------------------------------


@scenario("model-missing")
def _model_missing(capsys, monkeypatch):
    return skyrl(capsys, "eval", write("m.toml", '[model]\npath = "./models/my-model"\n'))


@scenario("cuda-unavailable")
def _cuda(capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    text = TINY_MODEL.replace('device = "cpu"', 'device = "cuda"')
    text += '[data]\neval = ["e.parquet"]\ngenerate = "arithmetic"\n'
    return skyrl(capsys, "eval", write("cuda.toml", text))


# -- data ------------------------------------------------------------------------------------


@scenario("invalid-rows")
def _invalid_rows(capsys, monkeypatch):
    Path("bad.jsonl").write_text(
        '{"prompt": "What is 2 + 2?", "env_class": "arithmetic", "reward_spec": {"ground_truth": "4"}}\n'
        '{"prompt": [{"role": "user", "content": "What is 2 + 3?"}], "env_class": "arithmatic", '
        '"reward_spec": {"ground_truth": "5"}}\n'
    )
    return skyrl(capsys, "eval", write("d.toml", TINY_MODEL + '[data]\neval = ["bad.jsonl"]\n'))


@scenario("too-few-rows")
def _too_few_rows(capsys, monkeypatch):
    text = TINY_MODEL + (
        '[data]\ntrain = ["t.parquet"]\ngenerate = "arithmetic"\n[data.generate_options]\ntrain_rows = 4\n'
        'eval_rows = 2\n[trainer]\nprompts_per_step = 8\n[tracking]\ntrackers = []\n'
    )
    return skyrl(capsys, "train", write("few.toml", text))


@scenario("gsm8k-offline")
def _gsm8k_offline(capsys, monkeypatch):
    # A fresh process: the datasets library reads HF_HUB_OFFLINE when it is first imported.
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("SKYRL_LOAD_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-m", "skyrl_core.cli", "data", "prepare", "gsm8k", "--out", "g"],
                          env=env, capture_output=True, text=True, timeout=300)
    return proc.stdout + proc.stderr


@scenario("resume-other-data")
def _resume_other_data(capsys, monkeypatch):
    from skyrl_core.data import PromptLoader

    saved = PromptLoader(list(range(2000)), seed=0).state_dict()
    try:
        PromptLoader(list(range(1000)), seed=0).load_state_dict(saved)
    except SkyrlError as exc:
        return str(exc)
    raise AssertionError("no error")


# -- distributed -----------------------------------------------------------------------------


@scenario("fsdp2-needs-ray")
def _fsdp2(capsys, monkeypatch):
    text = TINY_MODEL + '[data]\ntrain = ["t.parquet"]\ngenerate = "arithmetic"\n[strategy]\nname = "fsdp2"\n'
    return skyrl(capsys, "train", write("f.toml", text + "[tracking]\ntrackers = []\n"))


@scenario("runtime-gpus")
def _runtime_gpus(capsys, monkeypatch):
    from skyrl_core.config.schema import RuntimeConfig
    from skyrl_core.runtime.cluster import check_resources

    # The totals `ray.cluster_resources()` reports for a cluster of 4 GPUs (no Ray needed for the check).
    try:
        cfg = RuntimeConfig(mode="ray", train_gpus=8)
        check_resources(cfg, {"GPU": 4.0, "CPU": 64.0}, where="the Ray cluster at 'auto'")
    except SkyrlError as exc:
        return str(exc)
    raise AssertionError("no error")


# -- checkpoints -----------------------------------------------------------------------------


@scenario("no-checkpoint")
def _no_checkpoint(capsys, monkeypatch):
    return skyrl(capsys, "export", write("x.toml", TINY_MODEL))


@scenario("sft-needs-warm-start")
def _sft(capsys, monkeypatch):
    return skyrl(capsys, "sft", write("s.toml", TINY_MODEL))


# -- the test --------------------------------------------------------------------------------


def appears(quote: str, output: str) -> bool:
    """Whether ``quote`` appears in ``output``; ``…`` matches any text (pieces in order)."""
    flat = " ".join(output.split())
    position = 0
    for piece in (" ".join(p.split()) for p in quote.split("…")):
        if not piece:
            continue
        found = flat.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def test_every_quoted_error_has_a_scenario():
    ids = [b.marker.split()[1] for b in ERROR_BLOCKS]
    assert len(ids) >= 15
    assert sorted(set(ids)) == sorted(ids), "one quote per scenario id"
    assert set(ids) <= set(SCENARIOS), set(ids) - set(SCENARIOS)


@pytest.mark.parametrize("block", ERROR_BLOCKS, ids=lambda b: b.marker.split()[1])
def test_the_quoted_error_is_what_the_code_emits(block, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    output = SCENARIOS[block.marker.split()[1]](capsys, monkeypatch)
    assert appears(block.body.strip(), output), f"{block.where}: quoted\n{block.body}\nbut the code printed\n{output}"


def test_the_matcher_is_not_trivially_true():
    assert appears("a … c", "a b c") and not appears("a … c", "c b a") and not appears("x", "a b c")

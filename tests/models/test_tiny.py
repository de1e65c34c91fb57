"""Tiny local models: tokenizer round trip through AutoTokenizer, loading, offline use."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaTokenizer, Qwen2Tokenizer

from skyrl_core.config.schema import ModelConfig, TinyModelConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.models.tiny import (
    CHATML_TEMPLATE,
    IM_END,
    IM_START,
    PAD_TOKEN,
    ModelNotFoundError,
    arithmetic_corpus,
    build_tiny_model,
    ensure_model,
)

SMALL = {"hidden_size": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate_size": 128}

SAMPLE_TEXTS = [
    *arithmetic_corpus(40, seed=7),
    "What is 123 + 4567? Put your final answer in \\boxed{}.",
    "  two leading spaces, tabs\tand\nnewlines\n\n",
    "unicode: héllo wörld ✓ 日本語 🙂",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "",
]


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def built(request, tmp_path_factory):
    arch = request.param
    return arch, build_tiny_model(tmp_path_factory.mktemp(arch) / "m", TinyModelConfig(arch=arch, **SMALL))


def test_folder_has_hf_files(built):
    _, path = built
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".m.tmp")], "temporary folder left behind"


def test_token_ids_survive_autotokenizer(built):
    arch, path = built
    trained = Tokenizer.from_file(str(path / "tokenizer.json"))
    family_cls = {"qwen2": Qwen2Tokenizer, "llama": LlamaTokenizer}[arch]
    for tok in (AutoTokenizer.from_pretrained(path), family_cls.from_pretrained(path)):
        for text in SAMPLE_TEXTS:
            expected = trained.encode(text).ids
            assert tok(text)["input_ids"] == expected, (type(tok).__name__, text)
            assert tok(text, add_special_tokens=False)["input_ids"] == expected
        # No BOS/EOS is added, pad and EOS are the ChatML ones.
        assert tok.eos_token == IM_END and tok.pad_token == PAD_TOKEN and tok.bos_token is None


def test_special_tokens_and_digits(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    for special in (IM_START, IM_END, PAD_TOKEN):
        assert len(tok(special)["input_ids"]) == 1
    pieces = tok.convert_ids_to_tokens(tok("What is 9876 + 5?")["input_ids"])
    digits = [p.lstrip("Ġ▁") for p in pieces if any(c.isdigit() for c in p)]
    assert digits == ["9", "8", "7", "6", "5"], pieces


def test_chat_template_with_generation_prompt(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"
    )
    no_prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert text.startswith(no_prompt) and not no_prompt.endswith("assistant\n")
    assert tok.chat_template == CHATML_TEMPLATE


def test_model_loads_and_generates(built):
    _, path = built
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    ids = tok("What is 2 + 3?", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert out.shape == (1, ids["input_ids"].shape[1] + 5)
    assert int(out.max()) < len(tok)


def test_loads_offline_in_a_fresh_process(tmp_path):
    folders = [
        str(build_tiny_model(tmp_path / arch, TinyModelConfig(arch=arch, **SMALL))) for arch in ("qwen2", "llama")
    ]
    script = textwrap.dedent(
        f"""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        for path in {folders!r}:
            tok = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path)
            ids = tok.apply_chat_template([{{"role": "user", "content": "1 + 1"}}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            out = model.generate(**ids, max_new_tokens=3, do_sample=False)
            print("OK", out.shape[1] - ids["input_ids"].shape[1])
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line for line in proc.stdout.splitlines() if line.startswith("OK")] == ["OK 3", "OK 3"]


def test_same_seed_same_weights_and_corpus_file(tmp_path):
    cfg = TinyModelConfig(arch="qwen2", vocab_size=300, **SMALL)
    a = build_tiny_model(tmp_path / "a", cfg, seed=3)
    b = build_tiny_model(tmp_path / "b", cfg, seed=3)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("SELECT a FROM b WHERE c = 1;\n" * 50 + "hello world\n" * 50)
    c = build_tiny_model(tmp_path / "c", TinyModelConfig(corpus=str(corpus), vocab_size=300, **SMALL))
    tok = AutoTokenizer.from_pretrained(c)
    assert len(tok("SELECT a FROM b")["input_ids"]) < len("SELECT a FROM b")


def test_existing_folder_is_not_overwritten(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(SkyrlError, match="already exists"):
        build_tiny_model(tmp_path / "m", TinyModelConfig(**SMALL))


def test_missing_corpus_file_is_a_clear_error(tmp_path):
    with pytest.raises(SkyrlError, match="no such file"):
        build_tiny_model(tmp_path / "m", TinyModelConfig(corpus=str(tmp_path / "nope.txt"), **SMALL))
    assert not (tmp_path / "m").exists()


def test_ensure_model_builds_once(tmp_path):
    cfg = ModelConfig(path=str(tmp_path / "tiny"), tiny=TinyModelConfig(**SMALL))
    path = ensure_model(cfg)
    assert (path / "config.json").exists()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_model(cfg) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_ensure_model_without_tiny_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match=r"\[model.tiny\]"):
        ensure_model(ModelConfig(path=str(tmp_path / "missing")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="no such folder"):
        ensure_model(ModelConfig(path="org/some-model"))

"""Loading the [model] section: devices, dtypes, tokenizer overrides, clear errors."""

from __future__ import annotations

import attrs
import pytest
import torch

from skyrl_core.config.schema import ModelConfig, TinyModelConfig
from skyrl_core.errors import SkyrlError
from skyrl_core.models.loading import load_causal_lm, load_tokenizer, resolve_device, resolve_dtype


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(SkyrlError, match="not a device"):
        resolve_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(SkyrlError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype(None, default="bfloat16") is torch.bfloat16
    assert resolve_dtype("float16") is torch.float16
    with pytest.raises(SkyrlError, match="unknown"):
        resolve_dtype("fp8")


def test_load_causal_lm_dtype_and_device(tiny_model_cfg):
    model = load_causal_lm(tiny_model_cfg)
    assert not model.training
    assert next(model.parameters()).dtype is torch.float32
    assert next(model.parameters()).device.type == "cpu"
    bf16 = load_causal_lm(tiny_model_cfg, dtype="bfloat16", device="cpu")
    assert next(bf16.parameters()).dtype is torch.bfloat16


def test_load_tokenizer_chat_template_inline_and_file(tiny_model_cfg, tmp_path):
    inline = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    tok = load_tokenizer(attrs.evolve(tiny_model_cfg, chat_template=inline))
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == "[user] hi\n"

    template_file = tmp_path / "t.jinja"
    template_file.write_text("{% for m in messages %}<{{ m['content'] }}>{% endfor %}")
    tok = load_tokenizer(attrs.evolve(tiny_model_cfg, chat_template=str(template_file)))
    assert tok.apply_chat_template(msgs, tokenize=False) == "<hi>"

    with pytest.raises(SkyrlError, match="no such file"):
        load_tokenizer(attrs.evolve(tiny_model_cfg, chat_template=str(tmp_path / "missing.jinja")))


def test_load_tokenizer_sets_missing_pad_token(tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "nopad"
    shutil.copytree(tiny_model_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = None
    tok.save_pretrained(folder)
    loaded = load_tokenizer(ModelConfig(path=str(folder)))
    assert loaded.pad_token == loaded.eos_token == "<|im_end|>"


def test_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(SkyrlError, match="no such folder"):
        load_tokenizer(ModelConfig(path=str(tmp_path / "missing")))
    with pytest.raises(SkyrlError, match="no such folder"):
        load_causal_lm(ModelConfig(path=str(tmp_path / "missing")))
    with pytest.raises(SkyrlError, match="tokenizer"):
        load_tokenizer(ModelConfig(path=str(tmp_path), tokenizer=str(tmp_path / "nope" / "tok")))


def test_a_folder_without_tokenizer_files_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.json").write_text("{}")
    for name in ("empty", "config-only"):
        with pytest.raises(SkyrlError, match=r"\[model\] path = .*: the folder has no tokenizer files"):
            load_tokenizer(ModelConfig(path=str(tmp_path / name)))
    with pytest.raises(SkyrlError, match=r"\[model\] tokenizer = .*: the folder has no tokenizer files"):
        load_tokenizer(ModelConfig(path=str(tmp_path / "empty"), tokenizer=str(tmp_path / "config-only")))


def test_missing_tiny_model_is_built_on_load(tmp_path):
    cfg = ModelConfig(
        path=str(tmp_path / "tiny"),
        tiny=TinyModelConfig(hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64, vocab_size=300),
    )
    tok = load_tokenizer(cfg)
    model = load_causal_lm(cfg, device="cpu")
    assert model.config.vocab_size == len(tok)

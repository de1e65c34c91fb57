"""Incremental stop-string detection on real tiny tokenizers (byte-level Qwen2 and Metaspace Llama)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from skyrl_core.backends.stops import StopStringWatch, decode_text
from skyrl_core.config.schema import TinyModelConfig
from skyrl_core.models.tiny import build_tiny_model

TEXT = "Answer: 日本 is 12 + 30 = 42, so \\boxed{42}.<|im_end|> trailing"


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def tokenizer(request, tmp_path_factory):
    cfg = TinyModelConfig(arch=request.param, hidden_size=16, layers=1, heads=2, kv_heads=1, intermediate_size=32)
    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp(request.param) / "m", cfg))


def _first_hit(tokenizer, ids, stops):
    watch = StopStringWatch(tokenizer, stops)
    for k, token in enumerate(ids, start=1):
        hit = watch.append(token)
        if hit is not None:
            return k, hit
    return None, None


@pytest.mark.parametrize("stop", ["日本", "本", "12 + 30", "42}", "<|im_end|>", "d{4", " trailing", "Answer"])
def test_stop_is_reported_at_the_shortest_prefix(tokenizer, stop):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    k, hit = _first_hit(tokenizer, ids, [stop])
    expected = next(k for k in range(len(ids) + 1) if stop in decode_text(tokenizer, ids[:k]))
    assert (k, hit) == (expected, stop)


def test_multibyte_characters_split_across_tokens_wait_until_complete(tokenizer):
    ids = tokenizer("日本", add_special_tokens=False)["input_ids"]
    assert len(ids) > 2, "the tiny vocabulary has no merges for these characters"
    k, _ = _first_hit(tokenizer, ids, ["日"])
    assert "日" in decode_text(tokenizer, ids[:k]) and "日" not in decode_text(tokenizer, ids[: k - 1])


def test_the_stop_that_ends_first_wins(tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert _first_hit(tokenizer, ids, ["\\boxed", "12"])[1] == "12"
    assert _first_hit(tokenizer, ids, ["never", "also never"]) == (None, None)
    assert _first_hit(tokenizer, ids, ["", "42"])[1] == "42", "empty stop strings are ignored"


def test_accumulated_text_equals_decoding_everything(tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    watch = StopStringWatch(tokenizer, ["never"])
    for token in ids:
        watch.append(token)
    assert watch.text == decode_text(tokenizer, ids)

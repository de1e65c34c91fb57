"""Incremental stop-string detection and the stop checker both engines use, on real tiny tokenizers
(byte-level Qwen2 and Metaspace Llama)."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from skyrl_core.backends.stops import StopChecker, StopStringWatch, decode_text
from skyrl_core.config.schema import TinyModelConfig
from skyrl_core.models.tiny import build_tiny_model
from skyrl_core.protocols.backend import SamplingParams

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


def _checked(tokenizer, ids, params, limit, window):
    """Feed ``ids`` (log-prob of token i: -i) ``window`` tokens at a time until the checker ends the row."""
    checker = StopChecker(tokenizer, params, limit)
    lps = [-float(i) for i in range(len(ids))]
    for start in range(0, len(ids), window):
        if checker.feed(ids[start : start + window], lps[start : start + window]):
            break
    out = checker.output
    return out.ids, out.logprobs, out.finish_reason, out.stop_reason


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(),
        SamplingParams(stop=("12 + 30",)),
        SamplingParams(stop=("never", "42}")),
        SamplingParams(stop=("42}",), stop_token_ids=(-1,)),
        SamplingParams(stop=("<|im_end|>",)),
    ],
)
@pytest.mark.parametrize("limit", [3, 200])
def test_windows_end_a_row_where_single_tokens_do(tokenizer, params, limit):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    one = _checked(tokenizer, ids, params, limit, window=1)
    for window in (2, 5, 16):
        assert _checked(tokenizer, ids, params, limit, window) == one
    got_ids, lps, finish, reason = one
    assert lps == [-float(i) for i in range(len(got_ids))]
    k, hit = _first_hit(tokenizer, ids, [s for s in params.stop if s])
    if k is not None and k <= limit:
        assert (got_ids, finish, reason) == (ids[:k], "stop", hit)
    elif limit <= len(ids):
        assert (got_ids, finish, reason) == (ids[:limit], "length", None)
    else:  # the text ran out first: the row is still live
        assert (got_ids, finish, reason) == (ids, None, None)


def test_stop_token_ids_are_kept_and_win_over_a_later_stop_string(tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    k, _ = _first_hit(tokenizer, ids, ["42}"])
    stop_id = ids[3]
    first = ids.index(stop_id)
    params = SamplingParams(stop=("42}",), stop_token_ids=(stop_id,))
    for window in (1, 4, len(ids)):
        got_ids, _, finish, reason = _checked(tokenizer, ids, params, 100, window)
        assert (got_ids, finish, reason) == (ids[: first + 1], "stop", stop_id)
        no_strings = _checked(tokenizer, ids, SamplingParams(stop_token_ids=(stop_id,)), 100, window)
        assert no_strings == (ids[: first + 1], [-float(i) for i in range(first + 1)], "stop", stop_id)
    assert first + 1 < k


def test_a_finished_row_takes_no_more_tokens(tokenizer):
    checker = StopChecker(tokenizer, SamplingParams(), 2)
    assert checker.feed([5, 6, 7], [-1.0, -2.0, -3.0]) and checker.done
    assert checker.feed([8], [-4.0])
    out = checker.output
    assert (out.ids, out.logprobs, out.finish_reason) == ([5, 6], [-1.0, -2.0], "length")

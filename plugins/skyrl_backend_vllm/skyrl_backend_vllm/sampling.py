"""From skyrl's requests to vLLM's sampling parameters, and exact stop strings on vLLM's outputs.

Torch-free and vLLM-free (plain dicts and lists), shared by the in-process and the remote
backend.

Sampling. Every sample is its own vLLM request with its own seed (``n`` is fanned out
here, seeds from ``skyrl_core.backends.sampling.sample_seed``), so a sample does not
depend on what else is in flight and the in-process and remote backends draw the same
samples. vLLM's EOS handling is off (``ignore_eos``): only the request's
``stop_token_ids`` end a sample, as the backend contract says.

Log-probs. The engine runs with ``logprobs_mode = "processed_logprobs"``: vLLM reports the
sampled token's log-probability after temperature, min-p, top-k and top-p, i.e. under the
distribution it sampled from (greedy: the raw log-softmax). vLLM applies min-p *before*
top-k/top-p; the contract's order puts it last. Top-k and min-p commute, so the two orders
agree unless a request sets both ``top_p < 1`` and ``min_p > 0``; then the reported
log-probs are still those of the distribution vLLM sampled from, which can keep a few
tokens more or fewer than the contract's (see ``order_differs``).

Stop strings. ``trim_at_stop`` cuts a token sequence to the shortest prefix whose decoded
text contains a stop string, with ``skyrl_core.backends.stops`` (the native backend's
matcher), so tokens, text and log-probs are trimmed alike and exactly as the contract says.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from skyrl_core.api import SamplingParams, StopStringWatch, sample_seed


def sample_seeds(params: SamplingParams, request_seed: int) -> list[int]:
    """One seed per sample of a request seeded with ``request_seed``."""
    return [sample_seed(request_seed, j) for j in range(params.n)]


def order_differs(params: SamplingParams) -> bool:
    """True when vLLM's filter order (min-p before top-p) can differ from the contract's."""
    return params.temperature > 0 and params.top_p < 1 and params.min_p > 0


def warn_filter_order(params: SamplingParams) -> None:
    """Warn (once per process) when ``order_differs(params)``."""
    global _warned_order
    if _warned_order or not order_differs(params):
        return
    _warned_order = True
    warnings.warn(
        "vLLM applies min_p before top_p (skyrl's contract: after); with both set, samples and log-probs "
        "follow vLLM's order (the log-probs are still those of the distribution sampled from). Set only one "
        "of top_p < 1 and min_p > 0 to match the other backends exactly.",
        stacklevel=3,
    )


_warned_order = False


def vllm_sampling_kwargs(params: SamplingParams, seed: int, max_tokens: int, vocab_size: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one sample (n = 1).

    Stop strings are not passed: the in-process backend matches them itself on the
    streamed tokens, and the remote backend adds them with ``include_stop_str_in_output``.
    Stop token ids outside the vocabulary can never be sampled and are dropped.
    """
    greedy = params.temperature == 0
    return {
        "n": 1,
        "max_tokens": max_tokens,
        "temperature": params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "top_k": 0 if greedy or params.top_k <= 0 else params.top_k,
        "min_p": 0.0 if greedy else params.min_p,
        "seed": seed,
        "stop_token_ids": sorted({t for t in params.stop_token_ids if 0 <= t < vocab_size}),
        "ignore_eos": True,
        "logprobs": 0,
        "skip_special_tokens": False,
        "spaces_between_special_tokens": False,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
    }


def trim_at_stop(
    tokenizer: Any, ids: Sequence[int], logprobs: Sequence[float], stops: Sequence[str]
) -> tuple[list[int], list[float], str | None]:
    """Cut ``ids``/``logprobs`` to the shortest prefix whose text contains a stop string.

    Returns the (possibly unchanged) tokens and log-probs and the stop string found (None
    if none occurs). Tokens are never split: a final token that runs past the stop string
    is kept whole.
    """
    if not stops:
        return list(ids), list(logprobs), None
    watch = StopStringWatch(tokenizer, stops)
    for k, token in enumerate(ids):
        hit = watch.append(token)
        if hit is not None:
            return list(ids[: k + 1]), list(logprobs[: k + 1]), hit
    return list(ids), list(logprobs), None

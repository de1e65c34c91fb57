"""Request validation that every inference backend shares (native, vLLM, SGLang, third-party).

A backend checks a whole ``generate`` call before it runs any of it, so one bad request
fails the call with an error naming the backend, the request's index and every problem::

    check_requests(requests, backend="MyBackend", vocab_size=self.vocab_size, max_model_len=self.max_model_len)

    ValueError: MyBackend.generate: request 1: n must be >= 1 (got 0); top_p must be in (0, 1] (got 0)
"""

from __future__ import annotations

from collections.abc import Sequence

from skyrl_core.protocols.backend import GenerateRequest


def request_problems(
    request: GenerateRequest,
    *,
    vocab_size: int | None,
    max_model_len: int | None,
    length_option: str = "max_model_len",
) -> list[str]:
    """Everything wrong with one request for a model with this vocabulary and length (empty if fine).

    Args:
        request: the request to check.
        vocab_size: prompt ids must be in ``[0, vocab_size)`` (None: not checked).
        max_model_len: the prompt must leave room for one token of ``max_model_len``, the
            longest prompt + response (None: not checked).
        length_option: the ``[backend]`` option that raises ``max_model_len`` (named in the message).
    """
    p, ids = request.params, request.prompt_ids
    problems = []
    if not ids:
        problems.append("prompt_ids is empty; a prompt needs at least one token")
    bad = [t for t in ids if vocab_size is not None and not 0 <= t < vocab_size]
    if bad:
        problems.append(f"prompt token ids {bad[:5]} are outside the vocabulary [0, {vocab_size})")
    if max_model_len is not None and len(ids) >= max_model_len:
        problems.append(
            f"the prompt has {len(ids)} tokens; the model takes at most {max_model_len} (prompt + response). "
            f"Shorten it or raise [backend] {length_option}"
        )
    checks = [
        (p.max_new_tokens < 1, f"max_new_tokens must be >= 1 (got {p.max_new_tokens})"),
        (p.n < 1, f"n must be >= 1 (got {p.n})"),
        (p.temperature < 0, f"temperature must be >= 0 (got {p.temperature})"),
        (not 0 < p.top_p <= 1, f"top_p must be in (0, 1] (got {p.top_p})"),
        (not 0 <= p.min_p <= 1, f"min_p must be in [0, 1] (got {p.min_p})"),
    ]
    return problems + [message for failed, message in checks if failed]


def check_requests(
    requests: Sequence[GenerateRequest],
    *,
    backend: str,
    vocab_size: int | None,
    max_model_len: int | None,
    length_option: str = "max_model_len",
) -> None:
    """Raise ``ValueError`` for the first request with problems (see ``request_problems``).

    The message reads ``"{backend}.generate: request {index}: {problem}; {problem}..."``.
    """
    for index, request in enumerate(requests):
        problems = request_problems(
            request, vocab_size=vocab_size, max_model_len=max_model_len, length_option=length_option
        )
        if problems:
            raise ValueError(f"{backend}.generate: request {index}: " + "; ".join(problems))

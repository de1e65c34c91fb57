"""Where a sample ends: stop token ids, exact stop strings, length limits.

The text of an output is ``decode_text(tokenizer, token_ids)`` (special tokens kept, no
clean-up of spaces). ``StopStringWatch`` follows that text one token at a time, decoding
only a small window, and reports the first stop string that appears. Because it checks
after every token, the first token at which a match appears ends the shortest token
prefix whose text contains the stop string, which is what the backend protocol asks for.

``StopChecker`` applies all of a row's stop rules to its newly sampled tokens, in order:
both decode engines of the native backend use it, the Hugging Face engine one token at a
time and the static engine one window of tokens at a time, with the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from skyrl_core.backends.rows import RowOutput
from skyrl_core.protocols.backend import SamplingParams

REPLACEMENT_CHAR = "\ufffd"


def decode_text(tokenizer: Any, token_ids: Sequence[int]) -> str:
    """The text of ``token_ids`` as backends report it: special tokens kept, spaces untouched."""
    return tokenizer.decode(list(token_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


class StopStringWatch:
    """Watches one output for stop strings.

    Holds back characters of an incomplete UTF-8 sequence (decoded as U+FFFD) until the
    next token completes them, so a stop string is matched against final text only.
    """

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stops = tuple(s for s in stops if s)
        self.longest = max((len(s) for s in self.stops), default=0)
        self.ids: list[int] = []
        self.text = ""
        self._prefix_offset = 0  # window start: a little context so spacing decodes right
        self._read_offset = 0  # tokens before this are already in ``text``

    def append(self, token_id: int) -> str | None:
        """Add one token; return the stop string it completes, if any."""
        self.ids.append(token_id)
        decode = lambda ids: decode_text(self.tokenizer, ids)  # noqa: E731
        before = decode(self.ids[self._prefix_offset : self._read_offset])
        window = decode(self.ids[self._prefix_offset :])
        if len(window) <= len(before) or window.endswith(REPLACEMENT_CHAR):
            return None  # nothing new yet, or an incomplete character
        new = window[len(before) :]
        self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
        start = max(0, len(self.text) - self.longest + 1)
        self.text += new
        tail = self.text[start:]
        found = [(tail.find(s) + len(s), i) for i, s in enumerate(self.stops) if s in tail]
        if not found:
            return None
        # Several stops may match in the same step: report the one that ends first.
        return self.stops[min(found)[1]]


class StopChecker:
    """Applies one row's stop rules to the tokens it samples and collects its output.

    Rules, checked token by token in this order: a token in ``params.stop_token_ids`` (kept),
    the first full match of a string in ``params.stop`` (via ``StopStringWatch``), then the
    row's length ``limit``.

    Args:
        tokenizer: decodes the output for stop strings (unused when the row has none).
        params: the row's sampling parameters.
        limit: most tokens the row may produce (``>= 1``).

    Attributes:
        output: the tokens and log-probs kept so far, and why the row ended (once it has).
    """

    def __init__(self, tokenizer: Any, params: SamplingParams, limit: int) -> None:
        self.limit = limit
        self.stop_ids = frozenset(params.stop_token_ids)
        stops = [s for s in params.stop if s]
        self.watch = StopStringWatch(tokenizer, stops) if stops else None
        self.output = RowOutput()

    @property
    def done(self) -> bool:
        """The row has ended (stop or length)."""
        return self.output.finish_reason is not None

    def feed(self, tokens: Sequence[int], logprobs: Sequence[float]) -> bool:
        """Append ``tokens`` up to (and including) the first that ends the row; True once it has ended.

        Tokens past the end (sampled ahead in a window) are dropped.
        """
        out = self.output
        if self.done:
            return True
        room = self.limit - len(out.ids)
        cut, reason = min(len(tokens), room), None
        if self.watch is not None:
            for i, t in enumerate(tokens[:cut]):
                if t in self.stop_ids:
                    cut, reason = i + 1, t
                    break
                hit = self.watch.append(t)
                if hit is not None:
                    cut, reason = i + 1, hit
                    break
        elif self.stop_ids and not self.stop_ids.isdisjoint(tokens[:cut]):
            # No stop strings to follow: the set test skips the per-token scan for most windows.
            cut = next(i for i, t in enumerate(tokens) if t in self.stop_ids) + 1
            reason = tokens[cut - 1]
        out.ids.extend(tokens[:cut])
        out.logprobs.extend(logprobs[:cut])
        if reason is not None:
            out.finish_reason, out.stop_reason = "stop", reason
        elif len(out.ids) >= self.limit:
            out.finish_reason = "length"
        return self.done

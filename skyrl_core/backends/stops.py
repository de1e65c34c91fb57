"""Exact stop strings: incremental detokenisation of a growing output.

The text of an output is ``decode_text(tokenizer, token_ids)`` (special tokens kept, no
clean-up of spaces). ``StopStringWatch`` follows that text one token at a time, decoding
only a small window, and reports the first stop string that appears. Because it checks
after every token, the first token at which a match appears ends the shortest token
prefix whose text contains the stop string, which is what the backend protocol asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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

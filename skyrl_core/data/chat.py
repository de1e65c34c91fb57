"""Chat-template helpers for token-in/token-out generation.

The prompt is templated once. Later turns never re-tokenize the history: the
observation messages are templated *as a continuation* of a fixed base conversation
(``[user, assistant]``), and the base part is sliced off. ``ChatTokens`` precomputes what
it needs for one tokenizer:

* ``turn_suffix``: the text the template writes after an assistant message's content
  (ChatML: ``"<|im_end|>\\n"``, Llama 3: ``"<|eot_id|>"``). The model usually emits the
  first token of it (its end-of-turn token) itself; the rest is added as template tokens.
* ``continuation(observations)``: the text of the observation messages plus the
  generation prompt of the next assistant turn.

Everything works on text and is encoded with ``add_special_tokens=False``, exactly like
``apply_chat_template(..., tokenize=True)`` does. ``template_kwargs`` (``[model]
chat_template_kwargs``, e.g. ``{"enable_thinking": False}``) are passed to every
``apply_chat_template`` call, so prompts, later turns and the drift check see the same
template variables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from skyrl_core.errors import DataError

Message = dict[str, Any]

_MARKER = "\u2063SKYRL_ASSISTANT_MARKER\u2063"
_BASE: list[Message] = [{"role": "user", "content": "Hi."}]


def render(
    tokenizer: Any,
    messages: Sequence[Message],
    *,
    add_generation_prompt: bool,
    template_kwargs: Mapping[str, Any] | None = None,
) -> str:
    """Apply the tokenizer's chat template (with the extra template variables ``template_kwargs``)
    and return the text."""
    try:
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt, **dict(template_kwargs or {})
        )
    except ValueError as exc:
        if getattr(tokenizer, "chat_template", None) is None:
            raise DataError(
                "the tokenizer has no chat template; set [model] chat_template to a Jinja template "
                "(inline or a .jinja path)"
            ) from exc
        raise


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without added BOS/EOS (the template writes its own)."""
    return list(tokenizer.encode(text, add_special_tokens=False))


def prompt_token_ids(
    tokenizer: Any, messages: Sequence[Message], template_kwargs: Mapping[str, Any] | None = None
) -> list[int]:
    """Token ids of a prompt: the chat template with the generation prompt appended."""
    return encode(tokenizer, render(tokenizer, messages, add_generation_prompt=True, template_kwargs=template_kwargs))


#: Rendered prompts whose token ids ``ChatTokens.prompt_ids`` keeps (then it starts over).
PROMPT_CACHE_SIZE = 4096


class ChatTokens:
    """Per-tokenizer helpers for appending turns without re-tokenizing the history."""

    def __init__(self, tokenizer: Any, template_kwargs: Mapping[str, Any] | None = None) -> None:
        self.tokenizer = tokenizer
        self.template_kwargs = dict(template_kwargs or {})
        self._prompt_cache: dict[str, list[int]] = {}
        self._base = [*_BASE, {"role": "assistant", "content": _MARKER}]
        self._base_text = self._render(self._base, add_generation_prompt=False)
        at = self._base_text.rfind(_MARKER)
        if at < 0:
            raise DataError(
                "the chat template drops assistant message content, so multi-turn token accounting is "
                "impossible; use a template that renders every assistant message"
            )
        self.turn_suffix: str = self._base_text[at + len(_MARKER) :]
        suffix_ids = encode(tokenizer, self.turn_suffix)
        # The first suffix token is the end-of-turn token when it is a special token.
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.end_of_turn_id: int | None = suffix_ids[0] if suffix_ids and suffix_ids[0] in special else None

    def _render(self, messages: Sequence[Message], *, add_generation_prompt: bool) -> str:
        return render(self.tokenizer, messages, add_generation_prompt=add_generation_prompt,
                      template_kwargs=self.template_kwargs)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """``prompt_token_ids`` with this object's template variables. The ids of a rendered text are
        kept (a GRPO group's samples share their prompt: one encoding instead of n)."""
        text = self._render(messages, add_generation_prompt=True)
        ids = self._prompt_cache.get(text)
        if ids is None:
            if len(self._prompt_cache) >= PROMPT_CACHE_SIZE:
                self._prompt_cache.clear()
            ids = self._prompt_cache[text] = encode(self.tokenizer, text)
        return list(ids)

    def stop_token_ids(self) -> tuple[int, ...]:
        """The ids that end a model turn: the tokenizer's EOS ids plus the template's end-of-turn token."""
        ids: list[int] = []
        eos = getattr(self.tokenizer, "eos_token_id", None)
        for tok in eos if isinstance(eos, (list, tuple)) else [eos]:
            if isinstance(tok, int) and tok not in ids:
                ids.append(tok)
        if self.end_of_turn_id is not None and self.end_of_turn_id not in ids:
            ids.append(self.end_of_turn_id)
        return tuple(ids)

    def continuation(self, observations: Sequence[Message]) -> str:
        """Template text of ``observations`` followed by the next assistant generation prompt.

        Raises ``DataError`` when the template is not append-only for these messages.
        """
        full = self._render([*self._base, *observations], add_generation_prompt=True)
        if not full.startswith(self._base_text):
            raise DataError(
                "the chat template re-renders earlier messages when observations are appended (it is not "
                "append-only), so token-in/token-out multi-turn generation cannot be used with it; "
                "set [model] chat_template to an append-only template"
            )
        return full[len(self._base_text) :]

    def glue_text(self, last_model_token: int | None, observations: Sequence[Message]) -> str:
        """Text to append after a model turn: the rest of the turn suffix, then the observations."""
        return self.missing_suffix(last_model_token) + self.continuation(observations)

    def missing_suffix(self, last_model_token: int | None) -> str:
        """The part of the turn suffix the model did not write itself.

        When the model's last token is the template's end-of-turn token, only the text after
        it is missing (ChatML: ``"\\n"``); after a stop string or a length cut, all of it is.
        """
        if last_model_token is not None and last_model_token == self.end_of_turn_id:
            eot_text = self.tokenizer.decode([last_model_token], skip_special_tokens=False)
            if self.turn_suffix.startswith(eot_text):
                return self.turn_suffix[len(eot_text) :]
        return self.turn_suffix

    def matches_template(self, token_ids: Sequence[int], conversation: Sequence[Message]) -> bool:
        """Whether ``token_ids`` equal the chat template applied to ``conversation``.

        The template's trailing turn suffix may be missing from ``token_ids`` (the episode
        ended right after the model's turn); anything else that differs is drift.
        """
        expected = encode(self.tokenizer, self._render(conversation, add_generation_prompt=False))
        ours = list(token_ids)
        if ours == expected:
            return True
        if len(ours) < len(expected) and expected[: len(ours)] == ours:
            rest = self.tokenizer.decode(expected[len(ours) :], skip_special_tokens=False)
            return self.turn_suffix.endswith(rest)
        return False

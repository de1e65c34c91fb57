"""Contract of an inference backend: token ids in, token ids out.

A backend is constructed as ``Backend(config, model=ModelConfig, seed=int)`` where
``config`` is an instance of the backend spec's config class (from ``[backend]``) and
``model`` is the ``[model]`` section (``skyrl_core.config.schema.ModelConfig``).

Stop rules (every backend must follow them exactly; the conformance suite in
``skyrl_core.testing.conformance`` checks them):

* Generation of a sample ends at the first of: a token in ``stop_token_ids`` (the token is
  kept in the output), the first full match of any string in ``stop`` in the decoded
  output, or ``max_new_tokens`` tokens.
* On a stop-string match the output is the *shortest* token prefix whose decoded text
  contains the stop string; ``token_ids``, ``logprobs`` and ``text`` all describe exactly
  that prefix. (When the final token extends past the stop string, its extra characters
  stay: tokens are never split.) The stop string is part of the output.
* ``logprobs[i]`` is the log-probability of ``token_ids[i]`` under the distribution the
  token was actually sampled from (after temperature, top-k, top-p and min-p; greedy
  decoding reports the log-softmax of the raw logits).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

FINISH_REASONS = ("stop", "length", "abort")


@attrs.frozen
class SamplingParams:
    """Sampling parameters of one request.

    ``temperature == 0`` means greedy. ``top_k <= 0`` and ``top_p == 1`` and ``min_p == 0``
    disable those filters. With ``seed`` set, the ``n`` samples of a request are
    reproducible whatever else is in flight.
    """

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1


@attrs.frozen
class GenerateRequest:
    """A prompt (token ids) and how to sample continuations of it."""

    prompt_ids: tuple[int, ...] = attrs.field(converter=tuple)
    params: SamplingParams = SamplingParams()


@attrs.frozen
class Completion:
    """One sampled continuation.

    Attributes:
        token_ids: the generated tokens (stop token or stop-string tokens included).
        logprobs: one float per token in ``token_ids`` (see the module docstring).
        finish_reason: ``"stop"`` (stop token or string), ``"length"`` or ``"abort"``.
        stop_reason: the stop string or stop token id that ended generation, else None.
        text: the decoded ``token_ids`` (special tokens kept), or None if the backend has
            no tokenizer.
    """

    token_ids: tuple[int, ...] = attrs.field(converter=tuple)
    logprobs: tuple[float, ...] = attrs.field(converter=tuple)
    finish_reason: str = "length"
    stop_reason: str | int | None = None
    text: str | None = None


@attrs.frozen
class GenerateResult:
    """The ``n`` completions of one request, in sample order."""

    completions: tuple[Completion, ...] = attrs.field(converter=tuple)


@attrs.frozen
class BackendCapabilities:
    """What a backend can do, so the loop can choose transports and warn early."""

    logprobs: bool = True
    sleep: bool = False
    # Informational (shown by `skyrl components`, checked by tests): how this backend can take new
    # weights, of in_process | object_store | broadcast | cuda_ipc | disk. The transport of a run
    # is chosen from the declared protocols instead (skyrl_core.runtime.weight_sync).
    weight_transports: tuple[str, ...] = ("in_process",)
    lora_adapters: bool = False
    exact_stop_strings: bool = True
    abort: bool = False  # has abort_requests(): end queued/running requests now, partial tokens kept


class InferenceBackend(Protocol):
    """The methods the loop calls on a backend (checked before a run starts: ``skyrl_core.contracts``).

    Optional capabilities are separate protocols a backend may also implement:
    ``AbortsRequests``, ``KnowsModelLength``, ``LoadsLoraAdapters``, ``ReportsWeights`` and
    ``EngineGroup`` (``skyrl_core.protocols.weights``), and ``ChecksInstallation`` on the class.
    """

    capabilities: BackendCapabilities

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Generate for every request; results are in request order.

        Many callers may await ``generate`` concurrently (multi-turn trajectories); a
        backend batches what is in flight.
        """
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None:
        """Load new weights given as ``(name, tensor)`` pairs with Hugging Face names."""
        ...

    def reset_prefix_cache(self) -> None:
        """Drop cached prefixes (called after every weight update)."""
        ...

    def sleep(self) -> None:
        """Release accelerator memory until ``wake`` (no-op when unsupported)."""
        ...

    def wake(self) -> None:
        """Undo ``sleep``."""
        ...

    def shutdown(self) -> None:
        """Free every resource; the backend is unusable afterwards."""
        ...


# -- optional capabilities (declared by implementing them; checked with isinstance) ---------------


@runtime_checkable
class AbortsRequests(Protocol):
    """A backend that can end its running requests early (``[trainer] in_flight = "abort"``);
    it also sets ``capabilities.abort``."""

    def abort_requests(self) -> None:
        """End every queued and running request now: each returns with finish reason ``"abort"``
        and the tokens (and log-probs) generated so far. Thread-safe; does not wait."""
        ...


@runtime_checkable
class KnowsModelLength(Protocol):
    """A backend whose engine has a context limit: the generator ends a trajectory at
    ``max_model_len`` prompt + response tokens (finish reason ``length``) instead of failing."""

    max_model_len: int


@runtime_checkable
class LoadsLoraAdapters(Protocol):
    """A backend that generates with the base model plus a LoRA adapter it is given (and sets
    ``capabilities.lora_adapters``): a LoRA run then syncs only the adapter."""

    def load_lora_adapter(self, adapter: Any) -> None:
        """Load ``adapter`` (a ``skyrl_core.api.LoraAdapter``, replacing the previous version) for
        every later request."""
        ...

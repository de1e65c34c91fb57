"""Contract of a training strategy: owns the trainable model(s) and the optimizer.

Constructed as::

    Strategy(config, model=ModelConfig, trainer=TrainerConfig, seed=int,
             need_ref=bool, need_critic=bool, total_optimizer_steps=int)

``config`` is the strategy spec's config object (from ``[strategy]``). ``need_ref`` asks
for a frozen reference copy of the initial policy (KL), or of ``model.ref_path`` when that is
set; ``need_critic`` for a value model (GAE) whose body starts from the policy's, or from
``model.critic_path`` when that is set. The loop never touches modules or optimizers
directly: everything goes through the methods below, so a strategy may shard across
processes (FSDP2 on Ray) transparently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

try:
    import torch
    from torch import Tensor
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]
    Tensor = Any  # type: ignore[misc,assignment]

ModelRole = Literal["policy", "ref", "critic"]


@attrs.define
class TrainBatch:
    """``B`` sequences (prompt + response) with per-response-token tensors.

    Attributes:
        prompt_ids: ``B`` lists of prompt token ids.
        response_ids: ``B`` lists of response token ids.
        tensors: float tensors of shape ``(B, R)`` aligned with the response tokens, where
            ``R = max(len(r) for r in response_ids)`` and entries past a response's end are
            0. Always contains ``loss_mask``; the loop adds ``advantages``,
            ``old_logprobs``, ``ref_logprobs``, ``rollout_logprobs``, ``returns``,
            ``old_values`` as needed, and ``reduce_weights/<mode>`` (per-token weights of a
            loss reduction computed over the whole mini-batch,
            ``skyrl_core.algorithms.reductions.reduction_weights``) when a reduction needs them.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    tensors: dict[str, Tensor] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self.response_ids)

    @property
    def response_len(self) -> int:
        """``R``, the padded response length."""
        return max((len(r) for r in self.response_ids), default=0)

    def seq_len(self, i: int) -> int:
        """Tokens of sequence ``i`` (prompt + response)."""
        return len(self.prompt_ids[i]) + len(self.response_ids[i])

    def select(self, indices: Sequence[int]) -> TrainBatch:
        """A sub-batch with its tensors cut to the sub-batch's own ``R``."""
        idx = list(indices)
        prompts = [self.prompt_ids[i] for i in idx]
        responses = [self.response_ids[i] for i in idx]
        r = max((len(x) for x in responses), default=0)
        index = torch.tensor(idx, dtype=torch.long)
        tensors = {k: v.index_select(0, index.to(v.device))[:, :r] for k, v in self.tensors.items()}
        return TrainBatch(prompts, responses, tensors)


@attrs.frozen
class ForwardOutput:
    """Per-response-token outputs, each ``(B, R)`` (0 past a response's end)."""

    logprobs: Tensor | None = None
    entropy: Tensor | None = None
    values: Tensor | None = None


@attrs.frozen
class LossScale:
    """Totals over the whole mini-batch, so that micro-batch losses add up to its loss.

    Attributes:
        num_tokens: sum of ``loss_mask`` over the mini-batch.
        num_sequences: sequences in the mini-batch with at least one loss token.
    """

    num_tokens: float
    num_sequences: float


class LossFn(Protocol):
    """``loss_fn(micro, out, scale) -> (loss, metrics)``.

    ``micro`` is a micro-batch (a ``TrainBatch.select`` of the mini-batch), ``out`` the
    forward pass on it with gradients, ``scale`` the mini-batch totals. The strategy calls
    ``loss.backward()`` for each micro-batch and steps the optimizer once; metrics are
    averaged over micro-batches weighted by their token counts, except those named ``*_max``
    (the largest over micro-batches and ranks) and ``*_min`` (the smallest):
    ``skyrl_core.api.step_metrics`` does this for a strategy's own ``train_step``.
    """

    def __call__(self, micro: TrainBatch, out: ForwardOutput, scale: LossScale) -> tuple[Tensor, dict[str, float]]: ...


class TrainingStrategy(Protocol):
    """The methods the loop calls on a strategy (checked before a run starts: ``skyrl_core.contracts``).

    Optional capabilities are separate protocols a strategy may also implement:
    ``TrainsLoraAdapters``, ``ResetsReference`` and ``ShardedWeightSource``
    (``skyrl_core.protocols.weights``).
    """

    def forward(
        self, batch: TrainBatch, *, role: ModelRole = "policy", temperature: float = 1.0, need_entropy: bool = False
    ) -> ForwardOutput:
        """No-grad pass: log-probs (of ``response_ids`` given everything before them, with
        logits divided by ``temperature`` exactly as the sampler did; 0 means greedy and uses 1)
        and optionally entropy; for ``role="critic"`` the values instead. Float32 CPU tensors
        ``(B, R)``, 0 past each response's end."""
        ...

    def train_step(
        self,
        batch: TrainBatch,
        loss_fn: LossFn,
        *,
        role: ModelRole = "policy",
        temperature: float = 1.0,
        need_entropy: bool = False,
    ) -> dict[str, float]:
        """One optimizer step over ``batch`` (a mini-batch), micro-batched by the token
        budget with gradient accumulation, gradient clipping and the LR schedule.

        Returns metrics including ``grad_norm``, ``lr`` and ``skipped`` (1.0 when the step
        was skipped because the loss or gradient was not finite). For ``role="critic"`` every
        key without a ``/`` is prefixed ``critic/`` (the loop merges the policy's and the
        critic's metrics of one mini-batch into one dict).
        """
        ...

    def named_weights(self, bucket_bytes: int = 1 << 28) -> Iterator[list[tuple[str, Tensor]]]:
        """The policy's full weights (Hugging Face names) in buckets of about ``bucket_bytes``."""
        ...

    def save_checkpoint(self, path: Path) -> None:
        """Write model, optimizer, scheduler and RNG state under ``path`` (a directory that
        the caller creates and later renames into place)."""
        ...

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything written by ``save_checkpoint``."""
        ...

    def export_hf(self, path: Path, tokenizer: Any) -> None:
        """Write a Hugging Face model folder (``save_pretrained`` + tokenizer) to ``path``."""
        ...

    def offload(self) -> None:
        """Move model and optimizer state off the accelerator (colocation)."""
        ...

    def onload(self) -> None:
        """Undo ``offload``."""
        ...


@runtime_checkable
class TrainsLoraAdapters(Protocol):
    """A strategy that can train LoRA adapters instead of every weight (``[model.lora] rank > 0``)
    and hand the current adapter to an engine that loads adapters (``LoadsLoraAdapters``)."""

    def lora_config(self) -> Any:
        """The ``[model.lora]`` section (``skyrl_core.api.LoraConfig``) when this strategy trains
        adapters, else None (``named_weights`` is then the only sync path)."""
        ...

    def lora_adapter(self) -> Any:
        """The current adapter as a ``skyrl_core.api.LoraAdapter`` (a new version each call)."""
        ...


@runtime_checkable
class ResetsReference(Protocol):
    """A strategy whose reference model can be set to the current policy during a run
    (``[algorithm.kl] update_ref_every_epoch``; a run that asks for it with a strategy that is not
    one fails before any model loads)."""

    def reset_ref(self) -> None:
        """Make the reference model (``role="ref"``) a frozen copy of the current policy."""
        ...

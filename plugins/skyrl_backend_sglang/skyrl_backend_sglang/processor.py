"""The plugin's SGLang custom logit processor: the contract's sampling filters, and seeded draws on CPU.

SGLang's own filters differ from the backend contract (its top-p cut uses the mass before
top-k renormalisation, and the log-probs it returns are those of the temperature-scaled
distribution, before any filter). So for a sampled row that uses top-k, top-p or min-p,
the plugin sends ``temperature = 1`` and no filters to SGLang and attaches this processor,
which replaces the row's logits by the contract's filtered log-probs
(``skyrl_core.backends.sampling.filtered_logprobs``: temperature, top-k, top-p on the
renormalised distribution, min-p). SGLang then samples from ``softmax`` of them, which is
the filtered distribution itself, and returns ``log_softmax`` of them: the log-probs the
contract asks for.

Seeds without deterministic inference (CPU): SGLang only honours ``sampling_seed`` with
``enable_deterministic_inference``, which needs CUDA. In ``seeded_sampling = "serial"``
mode the engine runs one sequence at a time and this processor re-seeds the scheduler's
torch generator from (request seed, output position) right before SGLang draws, so the
draw depends on nothing but the row's distribution, its seed and its position.

The processor is sent to SGLang by reference (``dill`` pickles the importable class), so
the process running SGLang's scheduler must have this package installed; the server then
needs ``--enable-custom-logit-processor``.
"""

from __future__ import annotations

from typing import Any

from sglang.srt.sampling.custom_logit_processor import CustomLogitProcessor

#: Keys of ``custom_params`` the processor reads (``sampling_seed``-style ints and floats only: JSON-safe).
PARAM_KEYS = ("temperature", "top_k", "top_p", "min_p", "seed")


def draw_seed(seed: int, position: int) -> int:
    """The torch seed of the draw at ``position`` (0 = first output token) of a row seeded with ``seed``."""
    mixed = (seed * 0x9E3779B97F4A7C15 + (position + 1) * 0xD6E8FEB86659FD93) & (2**64 - 1)
    mixed ^= mixed >> 29
    return mixed & (2**63 - 1)


class ContractSampler(CustomLogitProcessor):
    """Filters each row's logits as the contract says; in serial mode, seeds the coming draw."""

    def __call__(self, logits: Any, custom_param_list: list[dict[str, Any]] | None = None) -> Any:
        import torch

        from skyrl_core.api import RowSampling, SamplingParams, filtered_logprobs

        params = custom_param_list or []
        if len(params) != logits.shape[0]:
            raise RuntimeError(
                f"skyrl ContractSampler: {logits.shape[0]} rows of logits but {len(params)} parameter sets"
            )
        rows = [
            SamplingParams(
                temperature=float(p["temperature"]),
                top_k=int(p.get("top_k", -1)),
                top_p=float(p.get("top_p", 1.0)),
                min_p=float(p.get("min_p", 0.0)),
            )
            for p in params
        ]
        out = filtered_logprobs(logits, RowSampling.build(rows, logits.device)).to(logits.dtype)
        seeded = [p for p in params if p.get("seed") is not None]
        if seeded:
            if len(params) != 1:
                raise RuntimeError(
                    "skyrl ContractSampler: seeded draws need one sequence per step (seeded_sampling = "
                    f"'serial' sets max_running_requests = 1), got {len(params)} rows"
                )
            req = params[0].get("__req__")
            position = len(req.output_ids) if req is not None else 0
            torch.manual_seed(draw_seed(int(seeded[0]["seed"]), position))
        return out

"""Options of the ``local`` training strategy (``[strategy]`` with ``name = "local"``).

Torch-free so that ``skyrl config validate`` and ``skyrl components`` stay fast. The
optimiser, schedule, precision and micro-batch budget are shared by every strategy and
live in ``[trainer]`` and ``[model]``; only what is specific to the single-process
strategy is here.
"""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.config.fields import option, positive


def packing_option() -> bool:
    """``[strategy] packing`` (shared by the strategies that pack micro-batches)."""
    return option(
        False,
        help="Pack several sequences into each row of a micro-batch (position ids restart per sequence, "
        "no padding between them) instead of one right-padded row per sequence; budgets then count the "
        "cells of those rows, and micro-batches are always formed longest first. Needs attention that keeps "
        "packed sequences apart (transformers' sdpa/eager/flex paths; flash attention only with one row); "
        "checked at start-up.",
    )


def packing_width_option() -> int | None:
    """``[strategy] packing_width``."""
    return option(
        None,
        help="With packing: row width in tokens (default: the micro-batch's longest sequence). Wide rows (e.g. "
        "the whole micro-batch token budget) leave almost no padding but attention then runs over the whole "
        "row, which only pays off with an attention implementation that skips masked blocks "
        "([model] attn_implementation = 'flex_attention').",
        check=positive,
    )


@attrs.define(kw_only=True)
class LocalStrategyConfig:
    """``[strategy]`` options of ``local``: one process, CPU or one GPU."""

    sort_micro_batches: bool = option(
        True,
        help="Pack sequences into micro-batches longest first (least padding); false keeps the batch order "
        "(ignored with packing, which always sorts).",
    )
    packing: bool = packing_option()
    packing_width: int | None = packing_width_option()
    forward_micro_batch_tokens: int | None = option(
        None,
        help="Token budget of the no-grad passes (old/ref log-probs, values); they keep no activations, so a "
        "larger budget than trainer.micro_batch_tokens is usually fine. Default: trainer.micro_batch_tokens.",
        check=positive,
    )
    critic_lr: float | None = option(
        None, help="Peak learning rate of the critic (value model); default: trainer.lr.", check=positive
    )
    disable_dropout: bool = option(
        True,
        help="Set every dropout probability of the model to 0 so that log-probs of the no-grad pass and of "
        "training agree (standard for RL fine-tuning).",
    )
    logits: Literal["auto", "sliced", "full"] = option(
        "auto",
        help="'sliced' applies the LM head to response positions only (saves memory with large vocabularies); "
        "'full' takes the model's own logits for every position; 'auto' checks once at start-up that 'sliced' "
        "reproduces the model's logits and falls back to 'full' when it does not (e.g. unusual output layers).",
    )
    shared_prefix: Literal["auto", True, False] = option(
        "auto",
        help="Run each distinct prompt of a micro-batch through the model once (with gradients) and the responses "
        "of its samples against its cached keys and values, instead of every prompt + response in full: the same "
        "log-probs and gradients, with (n - 1) / n of the prompt tokens' compute gone for groups of n samples. "
        "Used only for micro-batches in which sequences really share their prompt ids. 'auto' uses it when the "
        "model allows it (a Hugging Face key/value cache, full attention in every layer, logits resolved to "
        "'sliced', no packing, no gradient checkpointing) and a start-up probe reproduces the plain layout's "
        "log-probs; true requires it (an error says what is missing); false always runs the plain layout. "
        "Default 'auto': on the CPU anchor (16 prompts x 4 samples of 32 + 64 tokens, fp32, 1 thread) it cut the "
        "update from 1.23 s to 0.96-1.04 s (bench/RESULTS.md). On CUDA 'auto' is off: on one H100 (GRPO bench, "
        "0.5B, 64 x 4 samples of 128 + 512 tokens) it made the update slower, 3.03 s against 2.11 s, the "
        "gathered-cache attention losing to the plain layout's flash attention (true still turns it on).",
    )
    compile: Literal["auto", True, False] = option(
        "auto",
        help="torch.compile every transformer block (decoder layer) of the policy, reference and critic (regional "
        "compilation: the layers share their graphs; norms, RoPE, attention and MLP fused per layer) for the "
        "training and no-grad passes. Start-up compiles them on a probe batch and checks a training pass "
        "reproduces the eager log-probs; raises dynamo's recompile limit for the process. 'auto' (default) "
        "compiles on CUDA when Triton is importable and goes back to eager, with a notice, if the probe fails; "
        "true requires it (a failure is an error at start-up); false never compiles. On one H100 (GRPO bench, "
        "0.5B shape, 16k-token micro-batches) it took the update from 2.11 s to 1.34 s (MFU 23 % -> 37 %). "
        "Off on the CPU under 'auto': on the CPU anchor it costs ~55 s of compiling with an empty inductor "
        "cache for an update ~10 % faster (bench/RESULTS.md). Needs a C++ compiler on the CPU, Triton on CUDA.",
    )

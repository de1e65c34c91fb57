"""Options of the ``fsdp2`` training strategy (``[strategy]`` with ``name = "fsdp2"``).

Torch-free so that ``skyrl config validate`` and ``skyrl components`` stay fast. How many
workers there are and where they run is ``[runtime]`` (``train_gpus``, ``colocate``,
``address``); the optimiser, schedule, precision and micro-batch budget are ``[trainer]``
and ``[model]``, shared with ``local``. Only what is specific to sharded training is here.
"""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.config.fields import non_negative, option, positive
from skyrl_core.strategies.local_config import packing_option, packing_width_option


@attrs.define(kw_only=True)
class Fsdp2StrategyConfig:
    """``[strategy]`` options of ``fsdp2``: PyTorch FSDP2 over N Ray workers (one per GPU)."""

    sort_micro_batches: bool = option(
        True,
        help="Pack each worker's sequences into micro-batches longest first (least padding); false keeps "
        "the batch order (ignored with packing, which always sorts).",
    )
    packing: bool = packing_option()
    packing_width: int | None = packing_width_option()
    forward_micro_batch_tokens: int | None = option(
        None,
        help="Token budget of the no-grad passes (old/ref log-probs, values) per worker; default: "
        "trainer.micro_batch_tokens.",
        check=positive,
    )
    critic_lr: float | None = option(
        None, help="Peak learning rate of the critic (value model); default: trainer.lr.", check=positive
    )
    disable_dropout: bool = option(
        True, help="Set every dropout probability of the model to 0 (standard for RL fine-tuning)."
    )
    logits: Literal["auto", "sliced", "full"] = option(
        "auto",
        help="'sliced' applies the LM head to response positions only (saves memory with large vocabularies); "
        "'full' takes the model's own logits for every position; 'auto' checks once at start-up that 'sliced' "
        "reproduces the model's logits and falls back to 'full' when it does not (e.g. unusual output layers).",
    )
    reshard_after_forward: Literal["auto", True, False] = option(
        "auto",
        help="Free each layer's gathered parameters after its forward pass (ZeRO-3 memory); false keeps "
        "them until the backward pass (ZeRO-2 style: less communication, more memory). 'auto' = false at "
        "world size 1 (the shard is the whole model, so resharding saves nothing and costs a second "
        "all-gather per micro-batch), true otherwise.",
    )
    defer_gradient_sync: Literal["auto", True, False] = option(
        "auto",
        help="Across a step's micro-batches keep the parameters gathered and the gradients unsharded (float32), "
        "reduce-scattering once after the last backward (FSDP2's set_requires_gradient_sync and "
        "set_reshard_after_backward): one all-gather and one reduce-scatter per step instead of per micro-batch, "
        "for the memory of the unsharded bf16 parameters and float32 gradients. 'auto' = on at world size 1, "
        "where sharding saves no memory, off otherwise.",
    )
    prefetch_layers: int = option(
        1,
        help="Decoder layers whose parameters are all-gathered ahead of use: the next N in the forward "
        "pass and the previous N in the backward pass, overlapping communication with compute (0 leaves "
        "FSDP2's implicit prefetching; more costs memory).",
        check=non_negative,
    )
    reduce_dtype: Literal["float32", "bfloat16"] = option(
        "float32",
        help="Dtype of the gradient reduce-scatter when [model] dtype is bfloat16 (parameters are "
        "gathered in bfloat16; master weights and optimizer states stay float32).",
    )
    compile: Literal["auto", True, False] = option(
        "auto",
        help="torch.compile every decoder layer of each model after sharding (regional compilation, as with "
        "the local strategy's [strategy] compile; FSDP2's all-gather/reduce-scatter hooks stay eager). Fuses "
        "the norms, RoPE and MLP elementwise work; costs compile time at the first steps. 'auto' (default) "
        "compiles on CUDA when Triton is importable, true always, false never. On one H100 at world size 1 "
        "(bench/fsdp2_scaling.py, compare phase) it raised the 1.5B update from 28.8 % to 33.9 % MFU with "
        "checkpointing on (39.1 % with it off at 8k-token micro-batches). Checked on CPU (gloo) against the "
        "eager step. Needs a C++ compiler on the CPU, Triton on CUDA.",
    )
    timeout_s: float = option(
        1800.0,
        help="Seconds a collective (all-gather, reduce-scatter, weight broadcast) may wait for a peer "
        "before the process group gives up. A worker that dies is detected at once regardless.",
        check=positive,
    )

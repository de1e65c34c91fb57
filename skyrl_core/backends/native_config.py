"""Options of the native backend (``[backend] name = "native"``); torch-free so validation stays fast."""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.config.fields import device_spec, non_negative, option, positive


@attrs.define(kw_only=True)
class NativeBackendConfig:
    """``[backend]`` options of the native (torch + transformers) inference backend."""

    max_batch_size: int = option(
        64,
        help="Most sequences (samples) decoded together. Requests that arrive while a batch runs wait "
        "for the next one; a single request with more samples than this still runs, alone.",
        check=positive,
    )
    max_tokens_in_flight: int = option(
        262144,
        help="Budget of one batch: the sum over its sequences of prompt tokens + max_new_tokens "
        "(bounds KV-cache memory). A single request over the budget still runs, alone.",
        check=positive,
    )
    batch_wait_ms: float = option(
        2.0,
        help="Milliseconds the batcher waits for more requests before starting a batch that is not "
        "full (lets concurrent multi-turn trajectories share a batch).",
        check=non_negative,
    )
    dtype: Literal["float32", "bfloat16", "float16"] | None = option(
        None, help="Inference dtype; default: the [model] dtype."
    )
    device: str | None = option(
        None, help="'auto', 'cpu', 'cuda' or 'cuda:N'; default: the [model] device.", check=device_spec
    )
    max_model_len: int | None = option(
        None,
        help="Longest prompt + response in tokens (a response that reaches it ends with finish reason "
        "'length'); default: the model's max_position_embeddings.",
        check=positive,
    )
    engine: Literal["auto", "hf", "static"] = option(
        "auto",
        help="Decode loop: 'static' = preallocated KV cache, CUDA-graph decode steps, sampling on the "
        "device (skyrl_core.backends.static; Llama/Qwen2/Qwen3/Mistral); 'hf' = the Hugging Face model with "
        "a DynamicCache, one host check per token; 'auto' = static on CUDA and on the CPU when the model is "
        "supported, else hf. Both share one sampler and one seeding scheme: a seed gives the same samples on either, "
        "to float rounding (docs/backends.md).",
    )
    cuda_graphs: bool = option(True, help="Static engine on CUDA: capture decode steps in CUDA graphs.")
    sync_every: int = option(
        16,
        help="Static engine: decode steps run back to back between host checks for stops (a stopped "
        "row computes at most this many - 1 extra tokens, which are dropped).",
        check=positive,
    )
    prefill_tokens: int = option(
        16384, help="Static engine: padded prompt tokens per prefill chunk (bounds activation memory).", check=positive
    )
    attention_chunks: int | None = option(
        None,
        help="Static engine: admit rows longest prompt first and run each decode step's attention per chunk of "
        "rows, each chunk reading the KV cache up to its own longest row instead of the batch's (rows with short "
        "prompts then read fewer masked positions). Default: 4 on the CPU (a 3M-parameter model, 64 rows with "
        "prompts of 32-512 tokens: 5.0-5.1 s against 5.4-5.9 s), 1 on CUDA (SmolLM2's shape, 256 rows, one H100: "
        "12.7k tok/s with 4 chunks against 20.8k with 1, the extra attention launches and graphs cost more than "
        "they save). 1 turns it off; ignored with the Triton decode attention, which reads each row's own length.",
        check=positive,
    )
    decode_attention: Literal["auto", "triton", "sdpa"] = option(
        "auto",
        help="Static engine: decode attention by 'triton' = a split-KV Triton kernel whose programs stop at each "
        "row's own cache length and write the step's keys and values into the cache, or 'sdpa' = PyTorch's "
        "attention over the batch's longest row with a mask. 'auto' = Triton on CUDA when it imports and a start-up "
        "check on random data agrees with the reference (else SDPA, with a notice); SDPA on the CPU.",
    )
    cpu_threads: int | None = option(
        None,
        help="On the CPU: torch intra-op threads for decoding. In sync mode the trainer's thread decodes while it "
        "waits for the batch (one OpenMP team in the process) with its own count, the training's; a set value holds "
        "for each batch and the count is put back after it. When generation runs beside training (off-policy "
        "modes: the backend's own thread), the default is one thread for batches whose decode step is small "
        "(parameters x rows under 1e9, e.g. a 3M-parameter model at 64 rows), where a second OpenMP team's fork "
        "and join on ~100 small operators per token costs more than a second core gives, and torch's default "
        "(OMP_NUM_THREADS) otherwise. Measured on 2 cores (bench/RESULTS.md, run 8): the CPU anchor's 64 x 64 "
        "tokens in 0.45-0.50 s on the one team's two threads, 0.72 s on one thread, 0.74 s on two threads of a "
        "second team.",
        check=positive,
    )
    compile: Literal["auto", True, False] = option(
        "auto",
        help="Static engine: torch.compile the math between attentions of a decode step (output projection, "
        "residuals, norms, MLP, next q/k/v projection and RoPE: one graph per layer boundary, the layers share it), "
        "so inductor fuses its elementwise work; attention and cache writes stay eager. Compiles at the first "
        "decode step (seconds; again once for a second row count). 'auto' = on for CUDA with cuda_graphs, off on "
        "the CPU. Needs Triton on CUDA, a C++ compiler on the CPU; Llama/Qwen2/Qwen3/Mistral with SiLU MLPs.",
    )

"""Training strategies: own the trainable model(s) and the optimizer.

``local`` (one process, CPU or one GPU) lives in ``local.py``; ``fsdp2`` (FSDP2 over Ray
workers) in ``fsdp2.py`` (the driver), ``fsdp2_worker.py`` (one rank) and ``fsdp2_model.py``
(sharded modules). Both run one train step, ``update.py``, and share the pieces around it,
each in a module named for what it holds:

* ``micro_batching``: micro-batches by token budget, the mini-batch's ``LossScale``;
* ``batch_layout``: collation into (padded or packed) model inputs, the packing checks;
* ``token_outputs``: per-token log-probs/entropy (fused kernel) and values, their ``(B, R)`` layout;
* ``optim``: AdamW, the LR schedule, ``Trainable`` (module + optimizer + schedule + scaler);
* ``model_parts``: the critic's ``ValueModel`` and model surgery;
* ``offload``: pinned-memory offload; ``checkpoint_files``: checkpoint names, RNG states, atomic folders;
* ``lora``/``lora_sync``: LoRA adapters.

Strategies are registered in ``skyrl_core.builtins.backends`` and loaded lazily, so
importing this package imports no torch.
"""

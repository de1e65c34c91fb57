"""Training strategies: own the trainable model(s) and the optimizer.

``local`` (one process, CPU or one GPU) lives in ``local.py``; pieces a sharded strategy
can reuse (micro-batch packing, collation, LR schedule, checkpoint files, the SFT loss)
live in ``common.py``. Strategies are registered in ``skyrl_core.builtins.backends`` and
loaded lazily, so importing this package imports no torch.
"""

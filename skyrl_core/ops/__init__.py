"""Tensor kernels shared by the training strategies and the inference backends.

* ``skyrl_core.ops.logprobs``: chunked ``token_logprobs`` and ``entropy_from_logits``.
"""

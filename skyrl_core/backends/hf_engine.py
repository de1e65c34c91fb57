"""The Hugging Face decode engine (``[backend] engine = "hf"``): any causal LM, a ``DynamicCache``.

How a batch runs (``HFEngine.generate``): the distinct prompts are left-padded (attention
mask + position ids) and prefilled once; the cache is expanded to one row per sample;
every step samples one token per row (``skyrl_core.backends.sampling.sample``), hands it to
the row's ``StopChecker`` and drops finished rows from the cache. One host check per token,
so it is slower than the static engine on a GPU, but it runs every model transformers runs.

Same sampler, same stop checker, same seeds as the static engine: a row's output depends on
its prompt, parameters and seed only, not on the engine (see ``skyrl_core.backends.rows``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from skyrl_core.backends.rows import RowOutput, RowSpec
from skyrl_core.backends.sampling import RowSampling, sample
from skyrl_core.backends.stops import StopChecker


class HFDecoder:
    """Forward passes of a Hugging Face causal LM with a ``DynamicCache``.

    Shapes: ``B`` rows, ``L`` prompt length, ``S`` cached length, ``V`` vocabulary.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        # transformers >= 5.2x names the cache argument `cache`; older releases `past_key_values`.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    def prefill(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> tuple[Tensor, Any]:
        """Run the prompts ``(B, L)``; return the last position's logits ``(B, V)`` and the cache."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        return self._forward(input_ids, attention_mask, position_ids, cache), cache

    def decode(self, cache: Any, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor) -> Tensor:
        """One step: ``input_ids`` ``(B, 1)``, ``attention_mask`` ``(B, S + 1)``; returns logits ``(B, V)``."""
        return self._forward(input_ids, attention_mask, position_ids, cache)

    def select(self, cache: Any, rows: Tensor) -> None:
        """Keep (or repeat) the cache rows ``rows`` ``(B',)``, in place."""
        cache.batch_select_indices(rows)

    def _forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, cache: Any) -> Tensor:
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        return out.logits[:, -1, :]


class HFEngine:
    """Generates for batches of samples with the model's own forward pass (see the module docstring).

    Args:
        model: a Hugging Face causal LM.
        tokenizer: for stop strings.
        device: where the model is.
        pad_id: the token left padding uses (masked out; any id in the vocabulary).

    Attributes:
        stats: ``prefills`` and ``decode_steps`` run.
    """

    def __init__(self, model: Any, tokenizer: Any, *, device: torch.device, pad_id: int) -> None:
        self.decoder = HFDecoder(model)
        self.tokenizer = tokenizer
        self.device = device
        self.pad_id = pad_id
        self.stats = {"prefills": 0, "decode_steps": 0}

    def release(self) -> None:
        """No-op: the cache lives only as long as a batch."""

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        rows: Sequence[RowSpec],
        should_abort: Callable[[], bool] = lambda: False,
    ) -> list[RowOutput]:
        """Generate every row; outputs are in ``rows`` order. ``should_abort()`` is checked after
        every step; once true, the live rows end with finish reason ``"abort"``."""
        checks = [StopChecker(self.tokenizer, r.params, r.limit) for r in rows]
        if not rows:
            return []
        dev = self.device
        width = max(len(ids) for ids in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, ids in enumerate(prompts):
            input_ids[i, width - len(ids) :] = torch.tensor(list(ids), dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(dev), mask.to(dev)
        positions = (mask.cumsum(-1) - 1).clamp_(min=0)
        logits, cache = self.decoder.prefill(input_ids, mask, positions)
        self.stats["prefills"] += 1

        # One cache row per sample; a prompt's cache is shared by repeating its row.
        owner = [r.prompt for r in rows]
        if owner != list(range(len(prompts))):
            expand = torch.tensor(owner, device=dev)
            self.decoder.select(cache, expand)
            logits, mask, positions = logits[expand], mask[expand], positions[expand]
        last_pos = positions[:, -1]
        state = RowSampling.build([r.params for r in rows], dev, [r.seed for r in rows])
        active = list(range(len(rows)))
        step = 0  # every live row draws its token number `step`: they all started together
        while True:
            tokens, token_lps = sample(logits, state, torch.full((len(active),), step, dtype=torch.long, device=dev))
            keep = [
                j
                for j, (t, lp) in enumerate(zip(tokens.tolist(), token_lps.tolist(), strict=True))
                if not checks[active[j]].feed([t], [lp])
            ]
            if should_abort():
                for j in keep:
                    checks[active[j]].output.finish_reason = "abort"
                break
            if not keep:
                break
            if len(keep) < len(active):
                sel = torch.tensor(keep, device=dev)
                self.decoder.select(cache, sel)
                mask, last_pos, tokens, state = mask[sel], last_pos[sel], tokens[sel], state.select(sel)
                active = [active[j] for j in keep]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            last_pos = last_pos + 1
            step += 1
            logits = self.decoder.decode(cache, tokens[:, None], mask, last_pos[:, None])
            self.stats["decode_steps"] += 1
        return [c.output for c in checks]

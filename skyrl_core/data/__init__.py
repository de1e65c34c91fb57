"""Datasets in the SkyRL-Train row format: reading, validation, length filtering, loading.

::

    from skyrl_core.data import PromptLoader, load_prompts

    ds = load_prompts(cfg, registry, tokenizer, cfg.data.train, min_rows=cfg.trainer.prompts_per_step)
    loader = PromptLoader(ds, seed=cfg.run.seed, shuffle=cfg.data.shuffle)
    rows = loader.next_rows(cfg.trainer.prompts_per_step)

``load_prompt_rows`` is the same without a ``RunConfig`` (every setting as an argument).

See docs/data.md for the format.
"""

from skyrl_core.data.loader import PromptLoader
from skyrl_core.data.rows import (
    PromptDataset,
    PromptRow,
    load_prompt_rows,
    load_prompts,
    read_source,
    validate_rows,
)

__all__ = [
    "PromptDataset",
    "PromptLoader",
    "PromptRow",
    "load_prompt_rows",
    "load_prompts",
    "read_source",
    "validate_rows",
]

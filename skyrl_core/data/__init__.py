"""Datasets in the SkyRL-Train row format: reading, validation, length filtering, loading.

::

    from skyrl_core.data import PromptLoader, load_prompts

    ds = load_prompts(cfg.data.train, tokenizer=tok, max_prompt_tokens=cfg.data.max_prompt_tokens,
                      default_env_class=cfg.data.default_env_class, registry=registry,
                      min_rows=cfg.trainer.prompts_per_step, what="data.train")
    loader = PromptLoader(ds.rows, seed=cfg.run.seed, shuffle=cfg.data.shuffle)
    rows = loader.next_batch(cfg.trainer.prompts_per_step)

See docs/data.md for the format.
"""

from skyrl_core.data.loader import PromptLoader
from skyrl_core.data.prepare import ensure_data_files, run_preparer
from skyrl_core.data.rows import PromptDataset, PromptRow, load_prompts, read_source, validate_rows

__all__ = [
    "PromptDataset",
    "PromptLoader",
    "PromptRow",
    "ensure_data_files",
    "load_prompts",
    "read_source",
    "run_preparer",
    "validate_rows",
]

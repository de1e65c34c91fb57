"""``[tracking.wandb]``: the options of the W&B tracker (torch- and wandb-free: imported at start-up)."""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.api import option


@attrs.define(kw_only=True)
class WandbConfig:
    """``[tracking.wandb]``: where the W&B run goes and how it is named."""

    project: str = option("skyrl", help="W&B project of the run.")
    entity: str | None = option(None, help="W&B entity (user or team); None: your default entity.")
    name: str | None = option(None, help="Display name of the W&B run; None: `[run] name`.")
    group: str | None = option(None, help="W&B run group (e.g. one sweep or ablation).")
    tags: list[str] = option(factory=list, help="W&B tags of the run.")
    notes: str | None = option(None, help="A longer description shown on the W&B run page.")
    mode: Literal["auto", "online", "offline", "disabled"] = option(
        "auto",
        help="'online' sends data to the W&B server (needs `wandb login` or WANDB_API_KEY); 'offline' writes "
        "it under `dir` only, for `wandb sync` later; 'disabled' logs nothing; 'auto' follows the WANDB_MODE "
        "environment variable, else online.",
    )
    dir: str | None = option(
        None, help="Folder under which W&B writes its local files (a `wandb/` folder); None: the run directory."
    )

"""What ``[trainer] mode`` implies for the rest of a run's config (torch-free).

* ``implied_defaults``: off-policy modes (``one_step_off``, ``async``) turn truncated
  importance sampling on (``[algorithm.tis] mode = "token"``) unless the TOML sets it,
  through the same ``skyrl_config_defaults`` hook plugins use for presets. A value the
  user writes always wins; the trainer then warns once at start-up
  (``skyrl_core.pipeline.warnings_for``).
* ``mode_issues``: placements where generation and training cannot overlap.
"""

from __future__ import annotations

from typing import Any

from skyrl_core.config.schema import RunConfig
from skyrl_core.errors import ConfigIssue

OFF_POLICY_MODES = ("one_step_off", "async")
DEFAULT_TIS_MODE = "token"


def implied_defaults(raw: dict[str, Any]) -> dict[str, Any] | None:
    """``{"algorithm": {"tis": {"mode": "token"}}}`` when ``[trainer] mode`` is off-policy."""
    trainer = raw.get("trainer")
    if not isinstance(trainer, dict) or trainer.get("mode") not in OFF_POLICY_MODES:
        return None
    return {"algorithm": {"tis": {"mode": DEFAULT_TIS_MODE}}}


def mode_issues(cfg: RunConfig) -> list[ConfigIssue]:
    """Cross-table checks of ``[trainer] mode``."""
    mode = cfg.trainer.mode
    if mode == "sync":
        return []
    out = []
    if cfg.runtime.mode == "ray" and cfg.runtime.colocate:
        out.append(
            ConfigIssue(
                "trainer.mode",
                f"{mode!r} overlaps generation with training, but [runtime] colocate = true makes the engines "
                "and the trainer take turns on the same devices. Set [runtime] colocate = false (with "
                "inference_gpus >= 1) or use mode = 'sync'",
            )
        )
    return out

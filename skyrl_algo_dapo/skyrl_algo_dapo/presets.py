"""What ``[dapo]`` implies for the core tables, and the combinations it refuses.

Clip-higher and the token-level loss are core settings (``[algorithm.policy_loss]``
``eps_low``/``eps_high`` and ``[algorithm] loss_reduction``). ``dapo_defaults`` supplies DAPO's
values for them through ``skyrl_config_defaults``: they apply only where the run's TOML
leaves the key unset, so ``[dapo]`` alone is the whole recipe and an explicit setting tunes
it. ``dapo_issues`` (``skyrl_check_config``) rejects settings that would silently drop a
piece that ``[dapo]`` has on, naming the key and both ways out.
"""

from __future__ import annotations

from typing import Any

from skyrl_algo_dapo.config import DAPO_EPS_HIGH, DAPO_EPS_LOW, DapoConfig
from skyrl_algo_dapo.overlong import overlong_limits
from skyrl_core.api import ConfigIssue, RunConfig

PPO_CLIP_LOSSES = ("clip_cov", "dual_clip", "ppo_clip")
"""Builtin policy losses that clip the token ratio to ``[1 - eps_low, 1 + eps_high]`` PPO-style."""
DEFAULT_POLICY_LOSS = "ppo_clip"


def _table(node: Any, *path: str) -> dict[str, Any]:
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def dapo_defaults(raw: dict[str, Any]) -> dict[str, Any] | None:
    """Core defaults implied by a ``[dapo]`` table in the parsed TOML ``raw`` (None without one)."""
    if "dapo" not in raw:
        return None
    dapo = _table(raw, "dapo")
    out: dict[str, Any] = {}
    loss_name = _table(raw, "algorithm", "policy_loss").get("name", DEFAULT_POLICY_LOSS)
    if dapo.get("clip_higher", True) is True and loss_name in PPO_CLIP_LOSSES:
        out["policy_loss"] = {"eps_low": DAPO_EPS_LOW, "eps_high": DAPO_EPS_HIGH}
    if dapo.get("token_level_loss", True) is True:
        out["loss_reduction"] = "token_mean"
    return {"algorithm": out} if out else None


def dapo_issues(config: RunConfig) -> list[ConfigIssue]:
    """Combinations of ``[dapo]`` with core settings that cannot give DAPO."""
    section: DapoConfig | None = config.sections.get("dapo")
    if section is None:
        return []
    issues: list[ConfigIssue] = []
    algo = config.algorithm
    if section.clip_higher:
        loss = algo.policy_loss
        if loss.name not in PPO_CLIP_LOSSES:
            issues.append(ConfigIssue(
                "algorithm.policy_loss.name",
                f"[dapo] clip_higher = true needs a policy loss that clips the ratio PPO-style "
                f"({', '.join(PPO_CLIP_LOSSES)}), got {loss.name!r}; pick one of those or set "
                "dapo.clip_higher = false to keep this loss's own clipping",
            ))
        elif loss.config is not None and not loss.config.eps_high > loss.config.eps_low:
            issues.append(ConfigIssue(
                "algorithm.policy_loss.eps_high",
                f"[dapo] clip_higher = true needs eps_high > eps_low, got eps_high = {loss.config.eps_high} and "
                f"eps_low = {loss.config.eps_low}; remove both to use DAPO's {DAPO_EPS_LOW} / {DAPO_EPS_HIGH} or set "
                "dapo.clip_higher = false for symmetric clipping",
            ))
    if section.token_level_loss and algo.loss_reduction != "token_mean":
        issues.append(ConfigIssue(
            "algorithm.loss_reduction",
            f"[dapo] token_level_loss = true needs loss_reduction = 'token_mean', got {algo.loss_reduction!r}; "
            "remove the key (DAPO's default) or set dapo.token_level_loss = false to keep it",
        ))
    if section.dynamic_sampling and config.trainer.samples_per_prompt < 2:
        issues.append(ConfigIssue(
            "dapo.dynamic_sampling",
            f"needs groups of at least 2 samples to tell informative prompts apart, but "
            f"trainer.samples_per_prompt = {config.trainer.samples_per_prompt}; raise it (DAPO uses 16) or set "
            "dapo.dynamic_sampling = false",
        ))
    if section.overlong_punishment:
        max_tokens, buffer = overlong_limits(section, config.generator)
        if buffer > max_tokens:
            issues.append(ConfigIssue(
                "dapo.overlong_buffer_tokens",
                f"the penalty ramp ({buffer} tokens) is longer than the maximum response length it ends at "
                f"({max_tokens} tokens, dapo.overlong_max_tokens or the generation cap); lower it",
            ))
    return issues

"""Config classes of the GSM8K components (torch-free, imported when a registry is built).

* ``Gsm8kEnvConfig``: ``[environments.gsm8k]``
* ``Gsm8kMultiTurnConfig``: ``[environments.gsm8k_multi_turn]``
* ``Gsm8kPrepareConfig``: ``skyrl data prepare gsm8k --out DIR [--key value ...]``
* ``SyntheticPrepareConfig``: ``skyrl data prepare gsm8k_synthetic --out DIR [...]``
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from skyrl_core.api import non_negative, option, positive, unit_interval

#: Appended to every question. The worked example helps small models: with SmolLM2-135M-Instruct
#: it gave 5 of 8 greedy replies in the `#### N` form, against 2 of 8 for SkyRL's wording
#: ("Let's think step by step and output the final answer after \"####\".").
INSTRUCTION = "Solve it step by step, then write the final answer on its own line after ####, for example:\n#### 42"
_MODE_HELP = (
    "How the final answer is found: 'strict' reads only the number after the last `####` "
    "(GSM8K's convention); 'flexible' falls back to the last \\boxed{...} and then to the last "
    "number in the reply."
)
_SCORING_HELP = (
    "'ours': the rules of the other options. 'skyrl': skyrl-gym's rules exactly, for SkyRL data and "
    "comparable numbers: the text after the *first* `#### ` (no `$`, no `**`; commas dropped) must equal "
    "reward_spec.ground_truth as text; {rest} The other scoring options must keep their defaults "
    "(skyrl_env_gsm8k/README.md, 'SkyRL scoring')."
)


def _check_skyrl_scoring(config: Any, ours_only: tuple[str, ...]) -> None:
    """Refuse options that ``scoring = "skyrl"`` would ignore (SkyRL's rules are fixed)."""
    if config.scoring != "skyrl":
        return
    changed = [
        f"{f.name} = {getattr(config, f.name)!r}"
        for f in attrs.fields(type(config))
        if f.name in ours_only and getattr(config, f.name) != f.default
    ]
    if changed:
        raise ValueError(
            f"scoring = 'skyrl' uses skyrl-gym's fixed rules, so {', '.join(changed)} would have no effect; "
            f"remove {'it' if len(changed) == 1 else 'them'}, or set scoring = 'ours'"
        )


def _non_empty(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else f"must be a non-empty string, got {value!r}"


@attrs.define(kw_only=True)
class Gsm8kEnvConfig:
    """``[environments.gsm8k]``: single-turn GSM8K scoring."""

    mode: Literal["strict", "flexible"] = option("strict", help=_MODE_HELP)
    correct_reward: float = option(1.0, help="Reward for the correct final answer.", check=non_negative)
    format_reward: float = option(
        0.0,
        help="Reward for a well-formed but wrong answer (`#### N`, or `\\boxed{N}` in flexible mode): a small "
        "shaping bonus for the format. pass@k counts any reward > 0 as a pass, so keep 0 for exact pass rates.",
        check=non_negative,
    )
    scoring: Literal["ours", "skyrl"] = option(
        "ours",
        help=_SCORING_HELP.format(rest="reward 1 if it does, else 0."),
    )

    def __attrs_post_init__(self) -> None:
        _check_skyrl_scoring(self, ("mode", "correct_reward", "format_reward"))


@attrs.define(kw_only=True)
class Gsm8kMultiTurnConfig:
    """``[environments.gsm8k_multi_turn]``: retries with feedback, up to ``[generator] max_turns`` answers."""

    mode: Literal["strict", "flexible"] = option("strict", help=_MODE_HELP)
    correct_reward: float = option(1.0, help="Reward for a correct answer on the first turn.", check=non_negative)
    format_reward: float = option(
        0.0,
        help="Reward when the episode ends with a well-formed but wrong answer (see [environments.gsm8k]).",
        check=non_negative,
    )
    turn_discount: float = option(
        0.5,
        help="A correct answer on turn t earns correct_reward x turn_discount^(t-1), so solving it first try "
        "is worth most (1.0 = no penalty for retries). The whole reward is credited on the final turn.",
        check=unit_interval,
    )
    feedback: Literal["retry", "direction"] = option(
        "retry",
        help="What the environment says after a wrong answer: 'retry' only says it is wrong; 'direction' also "
        "says whether it is too high or too low.",
    )
    scoring: Literal["ours", "skyrl"] = option(
        "ours",
        help=_SCORING_HELP.format(
            rest="every turn earns its own reward: 1 if correct (the episode ends), 0.2 / max_turns if "
            "it has a wrong answer, else 0; feedback is SkyRL's two fixed messages."
        ),
    )

    def __attrs_post_init__(self) -> None:
        _check_skyrl_scoring(self, ("mode", "correct_reward", "format_reward", "turn_discount", "feedback"))


@attrs.define(kw_only=True)
class Gsm8kPrepareConfig:
    """Options of ``skyrl data prepare gsm8k``.

    Without ``data_dir``/``train_file``/``test_file`` the data comes from the Hugging Face
    hub (``hub_id``, config ``hub_config``).
    """

    data_dir: str | None = option(
        None,
        help="A folder with GSM8K's train.jsonl and test.jsonl (the layout of github.com/openai/grade-school-math, "
        'grade_school_math/data). Each line: {"question": ..., "answer": "... #### N"}.',
    )
    train_file: str | None = option(None, help="A GSM8K-format JSONL file for the train split (overrides data_dir).")
    test_file: str | None = option(None, help="A GSM8K-format JSONL file for the test split (overrides data_dir).")
    hub_id: str = option(
        "openai/gsm8k", help="Hugging Face dataset id used when no local file is given.", check=_non_empty
    )
    hub_config: str = option("main", help="Configuration of the hub dataset ('main' or 'socratic').", check=_non_empty)
    max_train_rows: int | None = option(None, help="Keep only the first N train rows.", check=positive)
    max_test_rows: int | None = option(None, help="Keep only the first N test rows.", check=positive)
    env_class: str = option(
        "gsm8k", help="The env_class column: 'gsm8k' or 'gsm8k_multi_turn' (or your own env).", check=_non_empty
    )
    instruction: str = option(INSTRUCTION, help="Text appended to every question ('' for none).", allow_empty=True)
    system_prompt: str = option("", help="System message of every prompt ('' for none).", allow_empty=True)
    sft: bool = option(
        True,
        help="Also write sft.parquet (prompt + GSM8K's worked solution, calculator annotations removed) from the "
        "train split, for a supervised warm start.",
    )


@attrs.define(kw_only=True)
class SyntheticPrepareConfig:
    """Options of ``skyrl data prepare gsm8k_synthetic`` (template word problems, no download)."""

    train_rows: int = option(256, help="Train rows.", check=positive)
    test_rows: int = option(64, help="Test rows (questions disjoint from train and sft).", check=positive)
    sft_rows: int = option(256, help="Supervised warm-start rows (0 for none).", check=non_negative)
    seed: int = option(0, help="Seed of the problem generator.")
    level: Literal["standard", "easy"] = option(
        "standard",
        help="Templates: 'standard' (two or three steps, GSM8K-like) or 'easy' (one operation, small numbers: "
        "within reach of a ~100M instruct model, e.g. SmolLM2-135M).",
    )
    env_class: str = option("gsm8k", help="The env_class column.", check=_non_empty)
    instruction: str = option(INSTRUCTION, help="Text appended to every question ('' for none).", allow_empty=True)
    system_prompt: str = option("", help="System message of every prompt ('' for none).", allow_empty=True)

"""Config classes: imported at start-up by every `skyrl` command, so no torch here."""

import attrs

from skyrl_core.api import non_negative, option, positive, seed_range


@attrs.define(kw_only=True)
class LetterCountConfig:
    """Options of the `letter_count` environment: `[environments.letter_count]`."""

    correct_reward: float = option(1.0, help="Reward for the right count.", check=non_negative)
    feedback: bool = option(
        True, help="When a row allows more than one turn, say 'too high' or 'too low' and let the model retry."
    )


@attrs.define(kw_only=True)
class LetterCountData:
    """Options of `skyrl data prepare letter_count`."""

    train_rows: int = option(200, help="Rows of train.parquet.", check=positive)
    eval_rows: int = option(50, help="Rows of eval.parquet (words not in train).", check=positive)
    max_turns: int = option(1, help="The max_turns column of every row (> 1: retries with feedback).", check=positive)
    seed: int = option(0, help="Seed of the word generator.", check=seed_range)

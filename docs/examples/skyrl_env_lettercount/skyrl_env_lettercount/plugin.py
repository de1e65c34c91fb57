"""The hook implementations: what this distribution adds to skyrl."""

from skyrl_core import ComponentSpec, hookimpl
from skyrl_env_lettercount.config import LetterCountConfig, LetterCountData


@hookimpl
def skyrl_register_environments():
    return [
        ComponentSpec(
            "letter_count",
            "skyrl_env_lettercount.env:LetterCountEnv",  # imported only when a run uses it
            "Count a letter in a word; reward for the right number in \\boxed{}.",
            LetterCountConfig,
        )
    ]


@hookimpl
def skyrl_register_dataset_preparers():
    return [
        ComponentSpec(
            "letter_count",
            "skyrl_env_lettercount.prepare:prepare",
            "Random words and letters: train.parquet and eval.parquet for letter_count.",
            LetterCountData,
        )
    ]

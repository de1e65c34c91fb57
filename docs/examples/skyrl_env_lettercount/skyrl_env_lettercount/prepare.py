"""`skyrl data prepare letter_count`: random words, a letter, and its count, as skyrl rows."""

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from skyrl_env_lettercount.config import LetterCountData

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def row(word: str, letter: str, max_turns: int, split: str, index: int) -> dict:
    """One row in skyrl's row format (docs/data.md)."""
    question = f"How many times does the letter '{letter}' appear in '{word}'? Answer in \\boxed{{}}."
    return {
        "prompt": [{"role": "user", "content": question}],
        "env_class": "letter_count",
        "reward_spec": {"method": "rule", "ground_truth": str(word.count(letter))},
        "data_source": "letter_count",
        "extra_info": {"split": split, "index": index, "word": word, "letter": letter},
        "max_turns": max_turns,
    }


def prepare(config: LetterCountData, out_dir: Path) -> dict[str, Path]:
    """Write train.parquet and eval.parquet to `out_dir`; eval words never occur in train."""
    rng = random.Random(config.seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < config.train_rows + config.eval_rows:
        word = "".join(rng.choices(LETTERS[:8], k=rng.randint(4, 10)))  # few letters: counts above 1 are common
        if word not in seen:
            seen.add(word)
            words.append(word)
    files = {}
    for split, chunk in (("train", words[: config.train_rows]), ("eval", words[config.train_rows :])):
        rows = [row(w, rng.choice(w), config.max_turns, split, i) for i, w in enumerate(chunk)]
        files[split] = out_dir / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), files[split])
    return files

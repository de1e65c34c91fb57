"""Helpers of skyrl-env-skyrlgym's tests (imported by the test modules and conftest.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

HAVE_SKYRL_GYM = importlib.util.find_spec("skyrl_gym") is not None

needs_skyrl_gym = pytest.mark.skipif(
    not HAVE_SKYRL_GYM,
    reason="skyrl-gym is not installed here; plugins/skyrl_env_skyrlgym/scripts/ci.sh runs these in its own venv",
)

DIST = "skyrl-env-skyrlgym"
#: ``skyrlgym_test_envs.py``: test environments registered with skyrl-gym when the registry is
#: built with ``SKYRL_SKYRLGYM_MODULES=skyrlgym_test_envs``.
TEST_ENVS_MODULE = "skyrlgym_test_envs"
TESTS_DIR = Path(__file__).resolve().parent
PROJECT_DIR = TESTS_DIR.parent


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- SkyRL-format data ----------------------------------------------------------------------

#: SkyRL's GSM8K instruction (examples/gsm8k/gsm8k_dataset.py), appended to each question.
GSM8K_SUFFIX = ' Let\'s think step by step and output the final answer after "####".'
GSM8K = [
    ("Tom has 3 apples and buys 4 more. How many apples does he have?", "7"),
    ("A box holds 6 pens. How many pens are in 2 boxes?", "12"),
    ("Sara had 10 cookies and ate 3. How many are left?", "7"),
    ("There are 5 birds and 4 more arrive. How many birds are there?", "9"),
    ("Ben reads 8 pages a day. How many pages does he read in 3 days?", "24"),
    ("A class has 20 students and 6 are absent. How many are present?", "14"),
    ("Lily has 15 stickers and gives away 5. How many remain?", "10"),
    ("Each car has 4 wheels. How many wheels do 3 cars have?", "12"),
]


def gsm8k_rows(env_class: str = "gsm8k", **extra: Any) -> list[dict[str, Any]]:
    """Rows exactly as SkyRL's GSM8K preparation writes them."""
    return [
        {
            "data_source": "openai/gsm8k",
            "prompt": [{"role": "user", "content": question + GSM8K_SUFFIX}],
            "env_class": env_class,
            "reward_spec": {"method": "rule", "ground_truth": answer},
            "extra_info": {"split": "train", "index": i, "answer": f"#### {answer}", "question": question},
            **extra,
        }
        for i, (question, answer) in enumerate(GSM8K)
    ]


SQL_SYSTEM = (
    "Think in <think>...</think>. Run a query with <sql>query</sql>, or answer with "
    "<solution>query</solution>."
)
SQL_QUESTIONS = ["How many items are there?", "Count the items in the shop.", "What is the number of items?",
                 "How many rows does the items table have?"]
SQL_GOLD = "SELECT COUNT(*) FROM items"
SQL_SOLUTION = f"<think>count them</think><solution>{SQL_GOLD}</solution>"


def make_database(root: Path) -> Path:
    """A real SQLite database where skyrl-gym's text2sql looks for Spider's ``shop``
    (``<db_path>/spider/database/shop/shop.sqlite``); returns ``db_path``."""
    import sqlite3

    path = root / "spider" / "database" / "shop" / "shop.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.executescript(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, price REAL);"
            "INSERT INTO items(name, price) VALUES ('pen', 1.5), ('book', 12.0), ('bag', 30.0), ('cup', 4.0);"
        )
    return root


def sql_rows(env_class: str = "text2sql") -> list[dict[str, Any]]:
    """Rows in SkyRL's SQL format (``db_id``, ``data`` naming the database family, gold SQL)."""
    return [
        {
            "data_source": "spider",
            "prompt": [{"role": "system", "content": SQL_SYSTEM}, {"role": "user", "content": q}],
            "env_class": env_class,
            "db_id": "shop",
            "data": "spider",
            "reward_spec": {"method": "rule", "ground_truth": SQL_GOLD},
        }
        for q in SQL_QUESTIONS
    ]


def corpus_lines() -> list[str]:
    """What the tiny model's tokenizer is trained on: these tasks' texts, so replies are short."""
    lines = [m["content"] for r in [*gsm8k_rows(), *sql_rows()] for m in r["prompt"]]
    lines += [f"#### {n}" for n in range(40)] + [SQL_SOLUTION, "<sql>", "</sql>", "<observation>", "</observation>"]
    lines += ["Please provide your step-by-step reasoning, and also include a tentative numeric answer at the end "
              "in the exact format: '#### ANSWER'.", "Now provide only the final numeric answer in the exact format: "
              "'#### ANSWER'.", "<reminder>You have 1 turns left to complete the task.</reminder>"]
    return lines * 10


RUN_TOML = """
[run]
name = "{name}"
seed = 1
dir = "{root}/run"

[model]
path = "{model}"
device = "cpu"

[data]
train = ["{root}/train.jsonl"]
eval = ["{root}/train.jsonl"]
max_prompt_tokens = 256
{data}

{warm_start}
[generator]
max_new_tokens = {max_new_tokens}
max_total_tokens = 320
{generator}

[trainer]
steps = 2
prompts_per_step = 4
samples_per_prompt = 2
lr = 1e-4

[eval]
every = 0

[tracking]
trackers = ["jsonl"]
plot = false
"""


WARM_START = """
[warm_start]
data = ["{root}/sft.jsonl"]
steps = {steps}
batch_size = 8
lr = 5e-3
"""


def write_run(root: Path, model: Path, rows: list[dict[str, Any]], sft: list[dict[str, Any]] | None = None, *,
              data: str = "", generator: str = "", extra: str = "", warm_steps: int = 30,
              max_new_tokens: int = 16) -> Path:
    """A two-step run on ``rows`` (train and eval), warm-started on ``sft`` when given; returns the
    TOML path. ``data`` and ``generator`` are more lines of those tables, ``extra`` more tables."""
    write_jsonl(root / "train.jsonl", rows)
    warm_start = ""
    if sft:
        write_jsonl(root / "sft.jsonl", sft)
        warm_start = WARM_START.format(root=root.as_posix(), steps=warm_steps)
    text = RUN_TOML.format(name=root.name, root=root.as_posix(), model=model.as_posix(), warm_start=warm_start,
                           max_new_tokens=max_new_tokens, data=data, generator=generator)
    path = root / "run.toml"
    path.write_text(text + extra)
    return path

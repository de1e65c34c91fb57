"""The builtin ``arithmetic`` dataset preparer: "What is 23 + 45?" problems.

``prepare_arithmetic(config, out_dir)`` writes three parquet files:

* ``train.parquet`` and ``eval.parquet``: RL rows (``prompt``, ``env_class="arithmetic"``,
  ``reward_spec={"method": "rule", "ground_truth": "68"}``, ``data_source``, ``extra_info``);
  eval problems never appear in the other splits;
* ``sft.parquet``: ``prompt`` + ``response`` rows (``"\\boxed{68}"``) for a supervised warm start.

The answer format is deliberately short so that a model of a few million parameters
trained from scratch can learn it in minutes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.config.fields import non_negative, option, positive, seed_range, unit_interval
from skyrl_core.errors import DataError

SYSTEM_PROMPT = "Put your final answer in \\boxed{}."
QUESTION = "What is {a} {op} {b}?"
DATA_SOURCE = "arithmetic"
OPERATORS = "+-*"
_ENUMERATE_LIMIT = 200_000

Problem = tuple[int, str, int]


def _check_operations(value: str) -> str | None:
    bad = sorted(set(value) - set(OPERATORS))
    if not value or bad:
        return f"must be a non-empty string of operators from {OPERATORS!r}, got {value!r}"
    return None


@attrs.define(kw_only=True)
class ArithmeticDataConfig:
    """Options of ``skyrl data prepare arithmetic``."""

    train_rows: int = option(4000, help="RL training rows.", check=positive)
    eval_rows: int = option(
        200, help="Evaluation rows (distinct problems, disjoint from the other splits).", check=positive
    )
    sft_noise: float = option(
        0.0,
        help="Fraction of warm-start (sft) responses whose answer is deliberately off by one (answer + 1), "
        "like imperfect supervised labels; RL with the exact reward can then correct what SFT taught. "
        "Train and eval rows are never noisy.",
        check=unit_interval,
    )
    sft_unboxed: float = option(
        0.0,
        help="Fraction of warm-start (sft) responses that state the answer without \\boxed{} "
        "(\"The answer is 68.\"), which the arithmetic reward rejects: the warm-started model then often "
        "answers in the wrong form and RL has to find the accepted one (the quickstart uses this).",
        check=unit_interval,
    )
    sft_rows: int = option(
        2000, help="Supervised warm-start rows (prompt + short correct response).", check=non_negative
    )
    digits: int = option(
        2, help="Digits per operand (difficulty): 1 -> 0..9, 2 -> 10..99, 3 -> 100..999.", check=positive
    )
    max_operand: int | None = option(
        None,
        help="Largest operand: operands are drawn from 0..max_operand, replacing the range `digits` "
        "gives (e.g. 20 for a task between 1 and 2 digits).",
        check=non_negative,
    )
    operations: str = option(
        "+-", help="Operators to draw from, any of '+', '-', '*' (e.g. '+-*').", check=_check_operations
    )
    allow_negative: bool = option(False, help="Allow subtraction results below zero.")
    seed: int = option(0, help="Seed of the problem generator.", check=seed_range)
    system_prompt: str = option(
        SYSTEM_PROMPT, help="System message of every prompt ('' for none).", allow_empty=True
    )
    instruction: str = option(
        "",
        help="Text appended to every question after a space, e.g. 'Answer with the number.' for a pretrained "
        "instruct model that does not box its answers ('' for none).",
        allow_empty=True,
    )


def answer(a: int, op: str, b: int) -> int:
    """The exact integer result of ``a op b``."""
    return a + b if op == "+" else a - b if op == "-" else a * b


def prompt_messages(
    a: int, op: str, b: int, system_prompt: str = SYSTEM_PROMPT, instruction: str = ""
) -> list[dict[str, str]]:
    """The chat messages of one problem: optional system message, then the question (and instruction)."""
    question = QUESTION.format(a=a, op=op, b=b)
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs.append({"role": "user", "content": f"{question} {instruction}" if instruction else question})
    return msgs


def response_text(value: int) -> str:
    """The reference reply, e.g. ``"\\boxed{68}"``."""
    return f"\\boxed{{{value}}}"


class _Space:
    """All problems of a difficulty: enumerated when small, sampled when large."""

    def __init__(self, cfg: ArithmeticDataConfig) -> None:
        if cfg.max_operand is not None:
            self.operands = range(0, cfg.max_operand + 1)
        else:
            self.operands = range(0 if cfg.digits == 1 else 10 ** (cfg.digits - 1), 10**cfg.digits)
        self.ops = sorted(set(cfg.operations), key=OPERATORS.index)
        self.allow_negative = cfg.allow_negative
        n = len(self.operands)
        self.size = sum(n * (n + 1) // 2 if op == "-" and not cfg.allow_negative else n * n for op in self.ops)

    def _ok(self, a: int, op: str, b: int) -> bool:
        return op != "-" or self.allow_negative or a >= b

    def enumerate(self) -> list[Problem]:
        return [(a, op, b) for op in self.ops for a in self.operands for b in self.operands if self._ok(a, op, b)]

    def draw(self, rng: random.Random) -> Problem:
        op = rng.choice(self.ops)
        a, b = rng.choice(self.operands), rng.choice(self.operands)
        if not self._ok(a, op, b):
            a, b = b, a
        return a, op, b


def sample_problems(cfg: ArithmeticDataConfig) -> dict[str, list[Problem]]:
    """Problems of each split: eval distinct and disjoint; train/sft distinct when the space allows."""
    space = _Space(cfg)
    if cfg.eval_rows > space.size // 2:
        raise DataError(
            f"arithmetic: eval_rows={cfg.eval_rows} but only {space.size} distinct problems exist with "
            f"operands {space.operands.start}..{space.operands.stop - 1}, operations={cfg.operations!r}; "
            "eval may use at most half of them: lower eval_rows or raise digits / max_operand"
        )
    rng = random.Random(cfg.seed)
    out: dict[str, list[Problem]] = {}
    if space.size <= _ENUMERATE_LIMIT:
        pool = space.enumerate()
        rng.shuffle(pool)
        out["eval"], rest = pool[: cfg.eval_rows], pool[cfg.eval_rows :]
        for split, n in (("train", cfg.train_rows), ("sft", cfg.sft_rows)):
            out[split] = rng.sample(rest, n) if n <= len(rest) else [rng.choice(rest) for _ in range(n)]
        return out
    seen: set[Problem] = set()
    while len(seen) < cfg.eval_rows:
        seen.add(space.draw(rng))
    out["eval"] = sorted(seen, key=lambda _: rng.random())
    for split, n in (("train", cfg.train_rows), ("sft", cfg.sft_rows)):
        taken: set[Problem] = set()
        rows: list[Problem] = []
        while len(rows) < n:
            p = space.draw(rng)
            if p not in seen and p not in taken:
                taken.add(p)
                rows.append(p)
        out[split] = rows
    return out


def _rl_row(p: Problem, split: str, index: int, cfg: ArithmeticDataConfig) -> dict[str, Any]:
    a, op, b = p
    return {
        "prompt": prompt_messages(a, op, b, cfg.system_prompt, cfg.instruction),
        "env_class": "arithmetic",
        "reward_spec": {"method": "rule", "ground_truth": str(answer(a, op, b))},
        "data_source": DATA_SOURCE,
        "extra_info": {"split": split, "index": index, "expression": f"{a} {op} {b}"},
    }


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist(rows), partial)
    partial.replace(path)


def sft_response(value: int, cfg: ArithmeticDataConfig, rng: random.Random) -> str:
    """A warm-start response, with the configured label noise and unboxed fraction."""
    if rng.random() < cfg.sft_noise:
        value += 1
    if rng.random() < cfg.sft_unboxed:
        return f"The answer is {value}."
    return response_text(value)


def prepare_arithmetic(config: ArithmeticDataConfig | None, out_dir: Path) -> dict[str, Path]:
    """Write ``train.parquet``, ``eval.parquet`` and ``sft.parquet`` into ``out_dir``; return their paths."""
    cfg = config or ArithmeticDataConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    problems = sample_problems(cfg)
    paths = {split: out_dir / f"{split}.parquet" for split in ("train", "eval", "sft")}
    for split in ("train", "eval"):
        rows = [_rl_row(p, split, i, cfg) for i, p in enumerate(problems[split])]
        _write_parquet(rows, paths[split])
    noise = random.Random(cfg.seed + 7919)  # its own stream: the problems do not depend on sft_noise
    sft = [
        {
            "prompt": prompt_messages(a, op, b, cfg.system_prompt, cfg.instruction),
            "response": sft_response(answer(a, op, b), cfg, noise),
            "data_source": DATA_SOURCE,
        }
        for a, op, b in problems["sft"]
    ]
    if sft:
        _write_parquet(sft, paths["sft"])
    else:
        del paths["sft"]
    return paths


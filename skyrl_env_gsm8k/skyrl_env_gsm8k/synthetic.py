"""Template word problems in GSM8K's own format, with computed answers (no download).

These are *not* GSM8K: they are multi-step grade-school word problems built from a few
templates, for tests and offline smoke runs. Each record looks exactly like a line of
GSM8K's ``train.jsonl``::

    {"question": "Mia sold 48 clips in April, and then she sold half as many clips in May. ...",
     "answer": "In May Mia sold 48/2 = <<48/2=24>>24 clips.\\n...\\n#### 72"}

``make_problems(n, seed)`` returns ``n`` distinct records; ``write_jsonl(path, records)``
writes them one JSON object per line. ``level="easy"`` draws from one-operation templates with
small numbers instead (:data:`EASY_TEMPLATES`): a task a ~100M-parameter instruct model solves
sometimes, so reinforcement learning has a signal from the first step.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path

Record = dict[str, str]

NAMES = ("Mia", "Liam", "Ava", "Noah", "Sofia", "Omar", "Lena", "Ravi", "Chen", "Zoe", "Iris", "Jonas")
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books")


def _calc(expr: str, value: int) -> str:
    """GSM8K's calculator annotation: ``"3*4 = <<3*4=12>>12"``."""
    return f"{expr} = <<{expr}={value}>>{value}"


def _clips(rng: random.Random) -> tuple[str, list[str], int]:
    name, a = rng.choice(NAMES), 2 * rng.randint(6, 60)
    half = a // 2
    q = (
        f"{name} sold {a} clips to friends in April, and then sold half as many clips in May. "
        f"How many clips did {name} sell altogether in April and May?"
    )
    steps = [
        f"In May {name} sold {_calc(f'{a}/2', half)} clips.",
        f"Altogether {name} sold {_calc(f'{a}+{half}', a + half)} clips.",
    ]
    return q, steps, a + half


def _wage(rng: random.Random) -> tuple[str, list[str], int]:
    name, rate, hours = rng.choice(NAMES), rng.randint(8, 25), rng.randint(2, 9)
    earned = rate * hours
    spent = rng.randint(5, earned - 1)
    q = (
        f"{name} earns ${rate} an hour for babysitting. This week {name} babysat for {hours} hours and then "
        f"spent ${spent} on a gift. How much money does {name} have left from the babysitting?"
    )
    steps = [
        f"{name} earned {_calc(f'{rate}*{hours}', earned)} dollars.",
        f"After the gift {name} has {_calc(f'{earned}-{spent}', earned - spent)} dollars.",
    ]
    return q, steps, earned - spent


def _wallet(rng: random.Random) -> tuple[str, list[str], int]:
    name, price = rng.choice(NAMES), 20 * rng.randint(3, 10)
    has = price // 2
    parents = rng.randint(3, has // 4)  # keeps the answer positive
    grand = 2 * parents
    left = price - has - parents - grand
    q = (
        f"{name} is saving for a bike that costs ${price}. {name} has only half of the money. "
        f"{name}'s parents give ${parents}, and the grandparents give twice as much as the parents. "
        f"How much more money does {name} need to buy the bike?"
    )
    steps = [
        f"{name} has {_calc(f'{price}/2', has)} dollars.",
        f"The grandparents give {_calc(f'{parents}*2', grand)} dollars.",
        f"{name} still needs {_calc(f'{price}-{has}-{parents}-{grand}', left)} dollars.",
    ]
    return q, steps, left


def _letters(rng: random.Random) -> tuple[str, list[str], int]:
    name, pages, friends, weeks = rng.choice(NAMES), rng.randint(2, 6), rng.randint(2, 4), rng.randint(2, 12)
    per_week = pages * friends * 2
    q = (
        f"{name} writes a {pages}-page letter to {friends} different friends twice a week. "
        f"How many pages does {name} write in {weeks} weeks?"
    )
    steps = [
        f"Each week {name} writes {_calc(f'{pages}*{friends}*2', per_week)} pages.",
        f"In {weeks} weeks that is {_calc(f'{per_week}*{weeks}', per_week * weeks)} pages.",
    ]
    return q, steps, per_week * weeks


def _bags(rng: random.Random) -> tuple[str, list[str], int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    start, used, bags, per_bag = rng.randint(20, 90), rng.randint(1, 19), rng.randint(2, 7), rng.randint(3, 12)
    bought = bags * per_bag
    q = (
        f"{name} has {start} {item}. {name} gives away {used} of them and then buys {bags} bags with "
        f"{per_bag} {item} in each bag. How many {item} does {name} have now?"
    )
    steps = [
        f"After giving some away {name} has {_calc(f'{start}-{used}', start - used)} {item}.",
        f"The bags hold {_calc(f'{bags}*{per_bag}', bought)} {item}.",
        f"Now {name} has {_calc(f'{start - used}+{bought}', start - used + bought)} {item}.",
    ]
    return q, steps, start - used + bought


def _shop(rng: random.Random) -> tuple[str, list[str], int]:
    name, x, p, y, c = rng.choice(NAMES), rng.randint(2, 6), rng.randint(3, 15), rng.randint(1, 4), rng.randint(10, 40)
    total = x * p + y * c
    q = f"{name} buys {x} notebooks for ${p} each and {y} backpacks for ${c} each. How much does {name} spend in total?"
    steps = [
        f"The notebooks cost {_calc(f'{x}*{p}', x * p)} dollars.",
        f"The backpacks cost {_calc(f'{y}*{c}', y * c)} dollars.",
        f"In total {name} spends {_calc(f'{x * p}+{y * c}', total)} dollars.",
    ]
    return q, steps, total


def _trip(rng: random.Random) -> tuple[str, list[str], int]:
    speed, hours, extra = 5 * rng.randint(6, 16), rng.randint(2, 5), rng.randint(10, 90)
    q = (
        f"A train travels at {speed} miles per hour for {hours} hours and then travels another {extra} miles. "
        "How many miles does the train travel in total?"
    )
    steps = [
        f"In {hours} hours it travels {_calc(f'{speed}*{hours}', speed * hours)} miles.",
        f"In total it travels {_calc(f'{speed * hours}+{extra}', speed * hours + extra)} miles.",
    ]
    return q, steps, speed * hours + extra


def _ages(rng: random.Random) -> tuple[str, list[str], int]:
    a, b = rng.sample(NAMES, 2)
    age, younger = rng.randint(5, 30), rng.randint(1, 4)
    other = 2 * age - younger
    q = f"{a} is {age} years old. {b} is {younger} years younger than twice {a}'s age. What is the sum of their ages?"
    steps = [
        f"{b} is {_calc(f'2*{age}-{younger}', other)} years old.",
        f"The sum is {_calc(f'{age}+{other}', age + other)}.",
    ]
    return q, steps, age + other


TEMPLATES: tuple[Callable[[random.Random], tuple[str, list[str], int]], ...] = (
    _clips,
    _wage,
    _wallet,
    _letters,
    _bags,
    _shop,
    _trip,
    _ages,
)


def _more(rng: random.Random) -> tuple[str, list[str], int]:
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(3, 40), rng.randint(2, 30)
    q = f"{name} has {a} {item}. A friend gives {name} {b} more {item}. How many {item} does {name} have now?"
    return q, [f"{name} has {_calc(f'{a}+{b}', a + b)} {item} now."], a + b


def _left(rng: random.Random) -> tuple[str, list[str], int]:
    name, item, a = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(10, 60)
    b = rng.randint(1, a - 1)
    q = f"{name} has {a} {item} and gives {b} of them away. How many {item} does {name} have left?"
    return q, [f"{name} has {_calc(f'{a}-{b}', a - b)} {item} left."], a - b


def _packs(rng: random.Random) -> tuple[str, list[str], int]:
    name, item, packs, each = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 9), rng.randint(2, 9)
    q = f"{name} buys {packs} packs of {item}. Each pack has {each} {item}. How many {item} does {name} buy?"
    return q, [f"{name} buys {_calc(f'{packs}*{each}', packs * each)} {item}."], packs * each


def _share(rng: random.Random) -> tuple[str, list[str], int]:
    name, item, friends, each = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 6), rng.randint(2, 9)
    total = friends * each
    q = f"{name} shares {total} {item} equally among {friends} friends. How many {item} does each friend get?"
    return q, [f"Each friend gets {_calc(f'{total}/{friends}', each)} {item}."], each


def _price(rng: random.Random) -> tuple[str, list[str], int]:
    name, count, price = rng.choice(NAMES), rng.randint(2, 9), rng.randint(2, 12)
    q = f"A notebook costs ${price}. {name} buys {count} notebooks. How many dollars does {name} spend?"
    return q, [f"{name} spends {_calc(f'{count}*{price}', count * price)} dollars."], count * price


#: One-operation problems with small numbers (``level="easy"``).
EASY_TEMPLATES: tuple[Callable[[random.Random], tuple[str, list[str], int]], ...] = (
    _more,
    _left,
    _packs,
    _share,
    _price,
)
LEVELS = {"standard": TEMPLATES, "easy": EASY_TEMPLATES}


def make_problems(n: int, seed: int = 0, exclude: Iterable[str] = (), level: str = "standard") -> list[Record]:
    """``n`` distinct GSM8K-format records (``question``, ``answer`` ending in ``#### N``).

    Questions listed in ``exclude`` are never returned (to keep splits disjoint). ``level`` picks
    the templates: ``"standard"`` (two or three steps) or ``"easy"`` (one operation).
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}: use one of {', '.join(LEVELS)}")
    templates = LEVELS[level]
    rng = random.Random(seed)
    seen = set(exclude)
    out: list[Record] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not draw {n} distinct problems (got {len(out)}); lower the count")
        question, steps, value = rng.choice(templates)(rng)
        if question in seen:
            continue
        seen.add(question)
        out.append({"question": question, "answer": "\n".join([*steps, f"#### {value}"])})
    return out


def write_jsonl(path: str | Path, records: Iterable[Record]) -> Path:
    """Write ``records`` as GSM8K-format JSONL (one object per line); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def write_gsm8k_dir(folder: str | Path, train_rows: int = 32, test_rows: int = 8, seed: int = 0) -> Path:
    """Write ``train.jsonl`` and ``test.jsonl`` (disjoint questions) in GSM8K's layout; return the folder."""
    folder = Path(folder)
    train = make_problems(train_rows, seed)
    test = make_problems(test_rows, seed + 1, exclude=[r["question"] for r in train])
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    return folder

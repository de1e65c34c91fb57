"""Comparing a predicted query's result set with the gold query's.

Rules (``results_match``):

* rows are compared as tuples, column by column, in column order; column *names* are
  ignored (``SELECT COUNT(*)`` and ``SELECT COUNT(*) AS n`` match);
* duplicates count: the results are compared as multisets (or lists, see next point), so
  ``SELECT city FROM t`` does not match ``SELECT DISTINCT city FROM t`` when a city repeats;
* order matters only when the gold query orders its result, i.e. has an ``ORDER BY`` at
  its top level (``has_top_level_order_by``; one inside a subquery or a window does not
  count), and ``ordered=True`` is passed. Rows that tie under the gold ordering must then
  also come in the gold query's order;
* numbers (int and float, bools as 0/1) are equal when
  ``abs(a - b) <= max(rel_tol * max(abs(a), abs(b)), abs_tol)`` (``math.isclose``;
  defaults rel 1e-6, abs 1e-9), so ``3`` equals ``3.0`` and ``0.1 + 0.2`` equals ``0.3``;
* text, blobs and NULL compare exactly; a number never equals text (``'3'`` is not ``3``),
  as in SQLite's own comparison of values of different storage classes.

Unordered comparison sorts both sides and compares pairwise; when that fails only because
of the tolerance (rows whose order flips between nearly equal numbers) a greedy matching
decides, for results of up to ``GREEDY_LIMIT`` rows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

Row = Sequence[Any]
GREEDY_LIMIT = 2000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def values_equal(a: Any, b: Any, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Equality of two SQLite values under the numeric tolerance (see the module docstring)."""
    if _is_number(a) and _is_number(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        fa, fb = float(a), float(b)
        if math.isnan(fa) or math.isnan(fb):
            return math.isnan(fa) and math.isnan(fb)
        return math.isclose(fa, fb, rel_tol=rel_tol, abs_tol=abs_tol)
    if _is_number(a) or _is_number(b):
        return False
    return type(a) is type(b) and a == b


def rows_equal(a: Row, b: Row, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
    """Same width and every value equal (``values_equal``)."""
    return len(a) == len(b) and all(values_equal(x, y, rel_tol, abs_tol) for x, y in zip(a, b, strict=True))


def _sort_key(row: Row) -> tuple[Any, ...]:
    # One total order over mixed SQLite values: NULL < numbers < text < blobs (SQLite's own).
    key = []
    for v in row:
        if v is None:
            key.append((0, 0))
        elif _is_number(v):
            key.append((1, float(v)) if not (isinstance(v, float) and math.isnan(v)) else (1, math.inf))
        elif isinstance(v, str):
            key.append((2, v))
        elif isinstance(v, (bytes, bytearray, memoryview)):
            key.append((3, bytes(v)))
        else:
            key.append((4, repr(v)))
    return tuple(key)


def results_match(
    pred: Sequence[Row],
    gold: Sequence[Row],
    *,
    ordered: bool = False,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
) -> bool:
    """Whether two result sets are equal under the rules of the module docstring."""
    if len(pred) != len(gold):
        return False
    if ordered:
        return all(rows_equal(p, g, rel_tol, abs_tol) for p, g in zip(pred, gold, strict=True))
    sorted_pred = sorted(pred, key=_sort_key)
    sorted_gold = sorted(gold, key=_sort_key)
    if all(rows_equal(p, g, rel_tol, abs_tol) for p, g in zip(sorted_pred, sorted_gold, strict=True)):
        return True
    if len(pred) > GREEDY_LIMIT or (rel_tol == 0 and abs_tol == 0):
        return False
    unmatched = list(sorted_gold)
    for row in sorted_pred:
        for i, candidate in enumerate(unmatched):
            if rows_equal(row, candidate, rel_tol, abs_tol):
                del unmatched[i]
                break
        else:
            return False
    return True


# -- does the gold query order its result? --------------------------------------------------


def _words_at_depth_zero(sql: str) -> list[str]:
    """Upper-cased bare words of ``sql`` outside parentheses, strings, identifiers and comments."""
    words: list[str] = []
    depth, i, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in "'\"`":
            # quoted string or identifier; a doubled quote is an escaped quote
            j = i + 1
            while j < n:
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif c == "[":
            end = sql.find("]", i + 1)
            i = n if end < 0 else end + 1
        elif c == "(":
            depth += 1
            i += 1
        elif c == ")":
            depth = max(depth - 1, 0)
            i += 1
        elif c.isalpha() or c == "_":
            j = i
            while j < n and (sql[j].isalnum() or sql[j] in "_$"):
                j += 1
            if depth == 0:
                words.append(sql[i:j].upper())
            i = j
        else:
            i += 1
    return words


def has_top_level_order_by(sql: str) -> bool:
    """True when ``ORDER BY`` appears outside every parenthesis, string and comment of ``sql``.

    ``SELECT * FROM (SELECT ... ORDER BY x)`` and ``ROW_NUMBER() OVER (ORDER BY x)`` do not
    order the final result; ``SELECT ... ORDER BY x`` and a compound ``... UNION ... ORDER BY x``
    do.
    """
    words = _words_at_depth_zero(sql)
    return any(a == "ORDER" and b == "BY" for a, b in itertools.pairwise(words))

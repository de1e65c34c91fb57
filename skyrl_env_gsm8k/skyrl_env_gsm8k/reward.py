"""GSM8K answer extraction and scoring. Pure string functions; nothing here raises on any input.

Extraction (``extract_answer``):

* ``strict``: the number right after the *last* ``####`` marker (GSM8K's own convention,
  e.g. ``"... so she has 12 left.\\n#### 12"``). Only whitespace and Markdown ``*`` may sit
  between the marker and the number. When the last marker has no number after it the
  reply is a parse failure, even if an earlier marker had one: the model's final word
  is what counts.
* ``flexible``: the strict answer when there is one; otherwise the value of the last
  ``\\boxed{...}`` (``boxed_value``); otherwise the last number anywhere in the reply. A last
  box that holds no readable number (``\\boxed{}``, ``\\boxed{3 or 4}``) does not end the
  search: like an empty ``####``, it falls through to the last number.

Numbers (``parse_number``) are read with ASCII digits only, so ``"４２"`` (full-width) or
``"٤٢"`` (Arabic-Indic) is not a number. Accepted decoration: a leading ``+``/``-`` (also
the Unicode minus ``−``), ``$`` before or after the sign, thousands commas in groups of
three (``1,234``), a decimal part, a decimal exponent (``1e3`` is 1000, ``2.5e-3`` is
0.0025), a simple fraction ``a/b``, a trailing ``%`` (dropped: GSM8K writes percentages as
plain numbers). Values are compared exactly as fractions, so ``7.50``, ``15/2`` and ``7.5``
are equal and ``42.0`` equals ``42``. Numbers with more than ``MAX_DIGITS`` digits are
rejected (they are not answers, and Python refuses to convert integers past 4,300 digits).

A number glued to letters is not a number: ``10km``, ``10k``, ``3x``, ``2nd``, ``0x1F`` are
never read as their leading digits. A grader cannot tell a unit (``10km`` = 10) from a
multiplier (``10k`` = 10,000) or another base without the question, so it does not guess:
``#### 10km`` has no answer in strict mode (reward 0, ``parse_failure``), and flexible mode
reads on as it does after any unreadable ``####``. A unit after a space is fine (``#### 10 km``
reads 10). Only ASCII letters count as glued: scripts written without spaces (``42个``) still
read 42.

Inside a box (``boxed_value``), LaTeX decoration is understood (``\\frac{a}{b}``, ``\\$``,
``{,}``, ``\\text{...}`` unwrapped, ``1.5 \\times 10^{3}``), a trailing unit in words is
dropped (``\\boxed{18 \\text{ cm}}``, ``\\boxed{\\text{42 apples}}``) and an equation
counts by its right-hand side (``\\boxed{x = 42}``, ``\\boxed{2 + 3 = 5}``). A box with two
assignments (``\\boxed{a = 3, b = 4}``) is ambiguous and has no value.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Literal

import attrs

Mode = Literal["strict", "flexible"]
MODES: tuple[str, ...] = ("strict", "flexible")
MAX_DIGITS = 64
MAX_BOXES_TRIED = 16
MARKER = "####"

# One number token: sign/$ in either order, 1,234 grouping or a plain digit run, optional
# decimals, optional "/denominator", optional "%". ASCII digits only (re.ASCII).
_NUMBER = (
    r"(?P<sign1>[+\-\u2212])?\s?(?P<dollar>\$)?\s?(?P<sign2>[+\-\u2212])?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?P<frac>\.\d+)?(?:[eE](?P<exp>[+\-\u2212]?\d+))?"
    r"(?:/(?P<den>\d+))?(?P<pct>\s?%)?"
)
_NUMBER_RE = re.compile(_NUMBER, re.ASCII)
# For scanning free text: a number must contain a digit; the lookbehind keeps "a1,234"
# or "x.5" from matching half a token. The token is matched inside a lookahead and then
# consumed by a backreference, which makes it atomic (``(?>...)`` needs Python 3.11): "10km"
# or "2.5x" then fails as a whole instead of backtracking to "10" or "2".
_TOKEN = (
    r"(?:[+\-\u2212]\s?)?(?:\$\s?[+\-\u2212]?)?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
    r"(?:[eE][+\-\u2212]?\d+)?(?:/\d+)?"
    r"|[+\-\u2212]?\$?[+\-\u2212]?\.\d+(?:[eE][+\-\u2212]?\d+)?"
)
_SCAN_RE = re.compile(rf"(?<![\w.])(?=(?P<tok>{_TOKEN}))(?P=tok)(?![A-Za-z0-9])%?", re.ASCII)
_LEAD_RE = re.compile(r"[\s*]*")
_BOXED = "\\boxed{"
# LaTeX that commonly decorates a boxed number: \frac{a}{b}, \$, \%, \text{...}, thin spaces,
# scientific notation.
_LATEX_FRAC_RE = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX_TEXT_RE = re.compile(r"\\(?:text|mathrm|textbf|textrm|mbox)\{([^{}]*)\}")
_LATEX_SPACE_RE = re.compile(r"\\[,!;: ]")
_LATEX_POWER_RE = re.compile(r"(\d)\s*\\(?:times|cdot)\s*10\^(?:\{\s*([+\-\u2212]?\d+)\s*\}|(\d))")
# A box's number, then optional unit words ("18 cm", "42 apples."); an assignment "x =".
_UNITS_RE = re.compile(r"(?P<number>.*?)(?:\s+[A-Za-z]+\.?)*\s*", re.ASCII | re.DOTALL)
_ASSIGNMENT_RE = re.compile(r"(?<![\w\\])[A-Za-z]\w*\s*=", re.ASCII)


@attrs.frozen
class Extraction:
    """What was found in a reply.

    Attributes:
        text: the answer text as written (e.g. ``"$1,234"``), or None when nothing was found.
        value: that text as an exact number, or None when it is not a valid number.
        source: where it came from: ``"marker"`` (``#### N``), ``"boxed"``, ``"last_number"``
            or ``"none"``.
    """

    text: str | None
    value: Fraction | None
    source: str

    @property
    def formatted(self) -> bool:
        """Whether the answer was given in an explicit answer format (``#### N`` or ``\\boxed{N}``)."""
        return self.value is not None and self.source in ("marker", "boxed")

    @property
    def parse_failure(self) -> bool:
        """Whether no valid number could be extracted."""
        return self.value is None


def parse_number(text: object) -> Fraction | None:
    """``"$1,234.50"`` -> ``Fraction(2469, 2)``; anything that is not exactly one number -> None."""
    if not isinstance(text, str):
        return None
    s = text.strip().strip("*").strip()
    if not s or len(s) > 4 * MAX_DIGITS:
        return None
    m = _NUMBER_RE.fullmatch(s)
    if m is None:
        return None
    return _value(m)


def _value(m: re.Match[str]) -> Fraction | None:
    if m["sign1"] and m["sign2"]:
        return None
    int_part, frac_part, exp, den = m["int"], m["frac"], m["exp"], m["den"]
    if int_part is None and frac_part is None:
        return None
    if den is not None and (frac_part is not None or exp is not None):
        return None  # "1.5/2" or "1e3/2" is not a simple fraction
    digits = (int_part or "").replace(",", "") + (frac_part or "")[1:]
    if len(digits) > MAX_DIGITS or (den is not None and len(den) > MAX_DIGITS):
        return None
    if exp is not None and len(exp.lstrip("+-\u2212")) > len(str(MAX_DIGITS)):
        return None  # "1e999999999" would take forever to expand and is no answer
    try:
        value = Fraction((int_part or "0").replace(",", "") + (frac_part or ""))
        if exp is not None:
            value *= Fraction(10) ** int(exp.replace("\u2212", "-"))
            if max(abs(value.numerator), value.denominator) >= 10**MAX_DIGITS:
                return None  # the same bound as for digits written out
        if den is not None:
            value /= int(den)
    except (ValueError, ZeroDivisionError):
        return None
    if (m["sign1"] or m["sign2"] or "+") in "-\u2212":
        value = -value
    return value


def after_last_marker(text: str) -> str | None:
    """The rest of the line after the last ``####``, or None when there is no marker."""
    at = text.rfind(MARKER)
    if at < 0:
        return None
    # A run of '#' longer than four ("#####") still ends at the same place.
    rest = text[at + len(MARKER) :]
    end = rest.find("\n")
    return rest if end < 0 else rest[:end]


def strict_answer(text: str) -> str | None:
    """The number text right after the last ``####`` marker, or None."""
    rest = after_last_marker(text)
    if rest is None:
        return None
    rest = rest[_LEAD_RE.match(rest).end() :]  # type: ignore[union-attr]  # always matches
    m = _SCAN_RE.match(rest)
    return m.group(0) if m else None


def last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{...}`` (balanced braces), or None.

    An unclosed box makes the search step back to the previous one, at most
    ``MAX_BOXES_TRIED`` times, and each box is scanned for at most ``4 * MAX_DIGITS``
    characters: a number never needs more, and the cost stays bounded on any input.
    """
    start = text.rfind(_BOXED)
    for _ in range(MAX_BOXES_TRIED):
        if start < 0:
            break
        depth = 0
        for i in range(start + len(_BOXED) - 1, min(len(text), start + len(_BOXED) + 4 * MAX_DIGITS)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start + len(_BOXED) : i]
        start = text.rfind(_BOXED, 0, start)
    return None


def clean_latex(text: str) -> str:
    """``"\\$1{,}234"`` -> ``"$1,234"``, ``"\\frac{3}{4}"`` -> ``"3/4"``, ``"18 \\text{ cm}"`` -> ``"18  cm "``,
    ``"1.5 \\times 10^{3}"`` -> ``"1.5e3"``."""
    text = _LATEX_FRAC_RE.sub(r"\1/\2", text)
    text = _LATEX_TEXT_RE.sub(r" \1 ", text)
    text = _LATEX_SPACE_RE.sub("", text)
    text = _LATEX_POWER_RE.sub(lambda m: f"{m[1]}e{m[2] or m[3]}", text)
    return text.replace("{,}", ",").replace("\\$", "$").replace("\\%", "%")


def boxed_value(content: str) -> Fraction | None:
    """The number a box holds: ``"42"``, ``"\\text{42}"``, ``"18 \\text{ cm}"``, ``"x = 42"`` -> 42.

    LaTeX is cleaned first (``clean_latex``); an equation counts by its right-hand side, unless
    the box assigns two names (``"a = 3, b = 4"``: ambiguous, None); trailing unit words and a
    final full stop are dropped. None when what is left is not exactly one number.
    """
    text = clean_latex(content)
    if len(_ASSIGNMENT_RE.findall(text)) > 1:
        return None
    text = text.rsplit("=", 1)[-1].strip().removesuffix(".")
    m = _UNITS_RE.fullmatch(text)
    return parse_number(m["number"]) if m else None


def last_number(text: str) -> str | None:
    """The last number-looking token in ``text``, or None."""
    found = None
    for found in _SCAN_RE.finditer(text):  # noqa: B007 - we want the last one
        pass
    return found.group(0) if found else None


def extract_answer(text: object, mode: Mode = "strict") -> Extraction:
    """Find the final answer of a reply (see the module docstring). Never raises."""
    if not isinstance(text, str) or not text:
        return Extraction(None, None, "none")
    marker = strict_answer(text)
    if marker is not None or mode == "strict":
        return Extraction(marker, parse_number(marker), "marker" if marker is not None else "none")
    boxed = last_boxed(text)
    value = boxed_value(boxed) if boxed is not None else None
    if value is not None:
        return Extraction(boxed, value, "boxed")
    # An unreadable last box (\boxed{}, \boxed{3 or 4}) does not end the search: as after an
    # empty ####, the last number in the reply is the answer.
    number = last_number(text)
    if number is not None:
        return Extraction(number, parse_number(number), "last_number")
    return Extraction(None, None, "none")


def ground_truth_value(ground_truth: object) -> Fraction | None:
    """The reference answer as a number: a plain number, or a GSM8K solution ending in ``#### N``."""
    if isinstance(ground_truth, bool):
        return None
    if isinstance(ground_truth, int):
        return Fraction(ground_truth)
    if isinstance(ground_truth, float):
        return Fraction(ground_truth).limit_denominator(10**6) if math.isfinite(ground_truth) else None
    if not isinstance(ground_truth, str):
        return None
    value = parse_number(ground_truth)
    if value is None and MARKER in ground_truth:
        value = parse_number(strict_answer(ground_truth))
    return value


@attrs.frozen
class Score:
    """The reward of one reply and what it was based on."""

    reward: float
    correct: bool
    extraction: Extraction


def score_answer(
    text: object,
    truth: Fraction,
    *,
    mode: Mode = "strict",
    correct_reward: float = 1.0,
    format_reward: float = 0.0,
) -> Score:
    """Score a reply against the reference value.

    ``correct_reward`` when the extracted number equals ``truth``; ``format_reward`` when
    an explicitly formatted answer (``#### N``, or ``\\boxed{N}`` in flexible mode) is
    wrong; 0.0 otherwise (no answer, an unparsable one, or a wrong last-number guess).
    """
    ex = extract_answer(text, mode)
    correct = ex.value is not None and ex.value == truth
    if correct:
        return Score(float(correct_reward), True, ex)
    return Score(float(format_reward) if ex.formatted else 0.0, False, ex)

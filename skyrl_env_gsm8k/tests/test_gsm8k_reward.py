"""The answer-string battery: well-formed, malformed and adversarial replies with expected rewards."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from skyrl_env_gsm8k.reward import (
    MAX_DIGITS,
    boxed_value,
    extract_answer,
    ground_truth_value,
    parse_number,
    score_answer,
)

MB = 1_000_000

# (reply, truth, strict reward, flexible reward, strict parse failure)
WELL_FORMED = [
    ("#### 72", 72, 1.0, 1.0, False),
    ("Natalia sold 48/2 = 24 clips in May.\nAltogether 48+24 = 72.\n#### 72", 72, 1.0, 1.0, False),
    ("#### 72.", 72, 1.0, 1.0, False),
    ("#### 72\n\nI hope this helps!", 72, 1.0, 1.0, False),
    ("####72", 72, 1.0, 1.0, False),
    ("#### **72**", 72, 1.0, 1.0, False),
    ("#### $72", 72, 1.0, 1.0, False),
    ("#### 72 dollars", 72, 1.0, 1.0, False),
    ("#### 72.0", 72, 1.0, 1.0, False),
    ("#### 72.000", 72, 1.0, 1.0, False),
    ("#### +72", 72, 1.0, 1.0, False),
    ("#### 1,234", 1234, 1.0, 1.0, False),
    ("#### $1,234,567.00", 1234567, 1.0, 1.0, False),
    ("#### 50%", 50, 1.0, 1.0, False),
    ("#### -5", -5, 1.0, 1.0, False),
    ("#### \u22125", -5, 1.0, 1.0, False),  # Unicode minus sign
    ("#### -$5", -5, 1.0, 1.0, False),
    ("#### $-5", -5, 1.0, 1.0, False),
    ("#### 7.5", Fraction(15, 2), 1.0, 1.0, False),
    ("#### 7.50", Fraction(15, 2), 1.0, 1.0, False),
    ("#### 15/2", Fraction(15, 2), 1.0, 1.0, False),
    ("#### .5", Fraction(1, 2), 1.0, 1.0, False),
    ("#### 0.5", Fraction(1, 2), 1.0, 1.0, False),
    ("#### 3 The answer is: 3", 3, 1.0, 1.0, False),  # SmolLM2's habit
    ("##### 72", 72, 1.0, 1.0, False),  # a longer run of '#' still marks the answer
]

MALFORMED = [
    ("The answer is 72.", 72, 0.0, 1.0, True),  # no marker: flexible takes the last number
    ("So the answer is \\boxed{72}.", 72, 0.0, 1.0, True),
    ("\\boxed{\\$1{,}234}", 1234, 0.0, 1.0, True),
    ("\\boxed{\\frac{15}{2}}", Fraction(15, 2), 0.0, 1.0, True),
    ("\\boxed{18 \\text{ cm}}", 18, 0.0, 1.0, True),
    ("#### seventy-two", 72, 0.0, 0.0, True),
    ("#### The answer is 72", 72, 0.0, 1.0, True),  # no number right after the marker; flexible reads on
    ("#### 71", 72, 0.0, 0.0, False),  # wrong
    ("#### 72 #### 73", 72, 0.0, 0.0, False),  # the last marker counts
    ("#### 73\n#### 72", 72, 1.0, 1.0, False),
    ("#### 72\n####", 72, 0.0, 1.0, True),  # last marker empty; flexible falls back to the last number
    ("72 ####", 72, 0.0, 1.0, True),
    ("#### 5/0", 72, 0.0, 0.0, True),
    ("#### 1,2", 12, 0.0, 0.0, False),  # not a thousands group: reads 1
    ("#### 7.2", 72, 0.0, 0.0, False),
    ("#### 720", 72, 0.0, 0.0, False),
    ("####", 72, 0.0, 0.0, True),
    ("#### ", 72, 0.0, 0.0, True),
    ("", 72, 0.0, 0.0, True),
    ("   \n\t ", 72, 0.0, 0.0, True),
    ("I don't know.", 72, 0.0, 0.0, True),
    ("\\boxed{72", 72, 0.0, 1.0, True),  # unclosed box: flexible falls back to the last number
    ("The answer is 72 apples, not 5.", 72, 0.0, 0.0, True),  # flexible: the LAST number (5) is wrong
]

# Issue 22: numbers glued to an exponent or to letters, and what a box holds.
GLUED_AND_BOXED = [
    ("#### 1e3", 1000, 1.0, 1.0, False),  # an exponent is part of the number...
    ("#### 1e3", 1, 0.0, 0.0, False),  # ... never read as its leading digits
    ("#### 2.5e-3", Fraction(1, 400), 1.0, 1.0, False),
    ("#### 2.5e-3", Fraction(5, 2), 0.0, 0.0, False),
    ("#### 1.5E+2", 150, 1.0, 1.0, False),
    ("#### 10km", 10, 0.0, 0.0, True),  # glued letters: unit or multiplier? not a number
    ("#### 10k", 10, 0.0, 0.0, True),
    ("#### 10k", 10_000, 0.0, 0.0, True),
    ("#### 2nd", 2, 0.0, 0.0, True),
    ("#### 0x1F", 0, 0.0, 0.0, True),
    ("#### 2.5x", 2, 0.0, 0.0, True),  # no backtracking to a shorter token either
    ("#### 1,234km", 1, 0.0, 0.0, True),
    ("#### 1e", 1, 0.0, 0.0, True),
    ("#### 10 km", 10, 1.0, 1.0, False),  # a unit after a space is fine
    ("#### 10km\nThe distance is 10 km.", 10, 0.0, 1.0, True),  # flexible reads on, as after any bad ####
    ("I ran 10km", 10, 0.0, 0.0, True),  # the last-number search skips glued tokens too
    ("\u7b54\u6848\u662f42\u4e2a", 42, 0.0, 1.0, True),  # non-ASCII letters do not glue (CJK has no spaces)
    ("\\boxed{\\text{42}}", 42, 0.0, 1.0, True),
    ("\\boxed{\\textbf{42}}", 42, 0.0, 1.0, True),
    ("\\boxed{\\text{42 apples}}", 42, 0.0, 1.0, True),
    ("\\boxed{42 \\text{dollars}}", 42, 0.0, 1.0, True),
    ("\\boxed{42.}", 42, 0.0, 1.0, True),
    ("\\boxed{1.5 \\times 10^{3}}", 1500, 0.0, 1.0, True),
    ("\\boxed{x = 42}", 42, 0.0, 1.0, True),  # an equation counts by its right-hand side
    ("\\boxed{x = 42 \\text{ cm}}", 42, 0.0, 1.0, True),
    ("\\boxed{2 + 3 = 5}", 5, 0.0, 1.0, True),
    ("\\boxed{10km}", 10, 0.0, 0.0, True),  # glued in a box too
    ("\\boxed{1e3}", 1000, 0.0, 1.0, True),
    # an unreadable last box does not end the search: flexible falls back to the last number
    ("The total is 42.\n\\boxed{}", 42, 0.0, 1.0, True),
    ("\\boxed{42} but wait, \\boxed{}", 42, 0.0, 1.0, True),
    ("So y = 42 and \\boxed{x = y}", 42, 0.0, 1.0, True),
    ("\\boxed{the answer}", 42, 0.0, 0.0, True),  # ... and without a number there is none
]

ADVERSARIAL = [
    ("#### " + "9" * 5000, 9, 0.0, 0.0, True),  # huge: refused, no ValueError from int()
    ("#### 1" + "0" * 100, 10**100, 0.0, 0.0, True),  # more digits than MAX_DIGITS
    ("#### 1" + "0" * (MAX_DIGITS - 1), 10 ** (MAX_DIGITS - 1), 1.0, 1.0, False),  # the longest accepted
    ("#### 1/" + "9" * 5000, 0, 0.0, 0.0, True),
    ("#### \uff14\uff12", 42, 0.0, 0.0, True),  # full-width digits
    ("#### \u0664\u0662", 42, 0.0, 0.0, True),  # Arabic-Indic digits
    ("#### \u00b2", 2, 0.0, 0.0, True),  # superscript two
    ("#### 4\u20682", 42, 0.0, 0.0, False),  # invisible separator: reads 4
    ("####" * 100_000, 72, 0.0, 0.0, True),  # many markers, none with a number
    ("#### 1\n" * 10_000 + "#### 72", 72, 1.0, 1.0, False),
    ("#### 72\n" + "#### oops\n" * 10_000, 72, 0.0, 1.0, True),
    ("x" * MB + "\n#### 72", 72, 1.0, 1.0, False),  # 1 MB of text before the answer
    ("#### 72\n" + "x" * MB, 72, 1.0, 1.0, False),  # ... and after it, on the next line
    ("1" * MB, 72, 0.0, 0.0, True),  # 1 MB of digits: one huge "number"
    ("7 " * (MB // 2), 7, 0.0, 1.0, True),  # half a million numbers
    ("\\boxed{" * 100_000, 72, 0.0, 0.0, True),  # many unclosed boxes
    ("\\boxed{}" * 100_000, 72, 0.0, 0.0, True),  # many empty boxes
    ("#### 1e" + "9" * 5000, 9, 0.0, 0.0, True),  # a huge exponent is refused, not expanded
    ("#### 9" * 100_000 + "km", 9, 0.0, 1.0, True),
    ("$" * MB, 72, 0.0, 0.0, True),
    ("\x00#### 72\x00", 72, 1.0, 1.0, False),
    ("#### 72\ud800", 72, 1.0, 1.0, False),  # lone surrogate
]


def _ids(cases):
    return [repr(c[0][:30]) + ("..." if len(c[0]) > 30 else "") for c in cases]


@pytest.mark.parametrize("mode", ["strict", "flexible"])
@pytest.mark.parametrize(
    ("reply", "truth", "strict", "flexible", "failure"),
    WELL_FORMED + MALFORMED + GLUED_AND_BOXED + ADVERSARIAL,
    ids=_ids(WELL_FORMED + MALFORMED + GLUED_AND_BOXED + ADVERSARIAL),
)
def test_battery(reply, truth, strict, flexible, failure, mode):
    score = score_answer(reply, Fraction(truth), mode=mode)
    assert score.reward == (strict if mode == "strict" else flexible)
    assert score.correct == (score.reward == 1.0)
    if mode == "strict":
        assert score.extraction.parse_failure == failure


@pytest.mark.parametrize("reply", [None, 72, 7.2, b"#### 72", ["#### 72"], {"a": 1}, object()])
def test_non_strings_score_zero(reply):
    for mode in ("strict", "flexible"):
        score = score_answer(reply, Fraction(72), mode=mode)
        assert score.reward == 0.0 and score.extraction.parse_failure


def test_format_reward_only_for_well_formed_wrong_answers():
    kw = {"correct_reward": 1.0, "format_reward": 0.1}
    assert score_answer("#### 72", Fraction(72), **kw).reward == 1.0
    assert score_answer("#### 71", Fraction(72), **kw).reward == 0.1
    assert score_answer("#### abc", Fraction(72), **kw).reward == 0.0
    assert score_answer("71", Fraction(72), **kw).reward == 0.0
    # flexible: an explicit \boxed answer is well-formed; a last-number guess is not
    assert score_answer("\\boxed{71}", Fraction(72), mode="flexible", **kw).reward == 0.1
    assert score_answer("it is 71", Fraction(72), mode="flexible", **kw).reward == 0.0
    assert score_answer("it is 72", Fraction(72), mode="flexible", **kw).reward == 1.0


def test_extraction_sources():
    assert extract_answer("#### 5", "flexible").source == "marker"
    assert extract_answer("\\boxed{5} and 6", "flexible").source == "boxed"
    assert extract_answer("5 and 6", "flexible").text == "6"
    assert extract_answer("5 and 6", "strict").source == "none"
    assert extract_answer("\\boxed{1} \\boxed{2}", "flexible").text == "2"
    assert extract_answer("\\boxed{\\boxed{3}}", "flexible").text == "3"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        (" 42 ", 42),
        ("+42", 42),
        ("-42", -42),
        ("$42", 42),
        ("42%", 42),
        ("1,000", 1000),
        ("1,000,000.5", Fraction(2000001, 2)),
        ("0.25", Fraction(1, 4)),
        ("1/4", Fraction(1, 4)),
        ("-3/4", Fraction(-3, 4)),
        ("042", 42),
        ("**42**", 42),
        ("42.0", 42),
        ("1e5", 100000),  # a decimal exponent is a number, not its leading digits
        ("1e3", 1000),
        ("1E3", 1000),
        ("1e+3", 1000),
        ("2.5e-3", Fraction(1, 400)),
        ("-2.5e3", -2500),
        ("\u22121e2", -100),
        (".5e1", 5),
        ("1e63", 10**63),
    ],
)
def test_parse_number_equal_values(text, value):
    assert parse_number(text) == Fraction(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "+",
        "$",
        "%",
        ".",
        "1,00",
        "12,34,567",
        "1.5/2",
        "1e3/2",
        "1/0",
        "--5",
        "+-5",
        "4 2",
        "1e",
        "e5",
        "1e5.5",
        "1e999999",
        "1e64",  # 65 digits, like "1" + "0" * 64
        "1e-64",
        "0x1F",
        "10km",
        "10k",
        "inf",
        "nan",
        "\uff14\uff12",
        "\u0664",
        "42 apples",
        None,
        42,
    ],
)
def test_parse_number_rejects(text):
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("truth", "value"),
    [
        ("72", 72),
        ("1,000", 1000),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", 72),
        (72, 72),
        (7.5, Fraction(15, 2)),
        ("-3", -3),
    ],
)
def test_ground_truth_value(truth, value):
    assert ground_truth_value(truth) == Fraction(value)


@pytest.mark.parametrize("truth", [None, "", "abc", "#### x", True, float("nan"), float("inf"), [72], {"x": 1}])
def test_ground_truth_value_rejects(truth):
    assert ground_truth_value(truth) is None


FUZZ_ALPHABETS = {
    "characters": [*"0123456789#$%,./+-*{}\\ \n", "\u2212", "\uff14", "\u0664", "boxed", "frac", "####", "\ud800"],
    # issue 22: exponents, glued letters, equations and LaTeX text in boxes
    "glued_and_boxed": [*"0123456789eEkmx=.,+- {}\\#\n", "\u2212", "####", "\\boxed{", "\\text{", "\\times 10^{",
                        "1e9999"],
}


@pytest.mark.parametrize(("alphabet", "seed"), [("characters", 0), ("glued_and_boxed", 1)])
def test_random_strings_never_raise(alphabet, seed):
    """Seeded fuzz over an alphabet of the characters the parser cares about."""
    rng = random.Random(seed)
    for _ in range(3000):
        text = "".join(rng.choice(FUZZ_ALPHABETS[alphabet]) for _ in range(rng.randint(0, 60)))
        for mode in ("strict", "flexible"):
            score = score_answer(text, Fraction(7), mode=mode, format_reward=0.25)
            assert score.reward in (0.0, 0.25, 1.0)
            assert (score.reward == 1.0) == (score.extraction.value == 7)


def test_a_box_read_through_its_equation_is_well_formed_and_a_fallback_is_not():
    kw = {"mode": "flexible", "correct_reward": 1.0, "format_reward": 0.1}
    assert score_answer("\\boxed{x = 41}", Fraction(42), **kw).reward == 0.1  # a well-formed wrong answer
    assert score_answer("\\boxed{\\text{41}}", Fraction(42), **kw).reward == 0.1
    fallback = score_answer("It is 41. \\boxed{}", Fraction(42), **kw)  # the last-number guess: no format bonus
    assert fallback.reward == 0.0 and fallback.extraction.source == "last_number"
    ambiguous = score_answer("\\boxed{a = 3, b = 41}", Fraction(42), **kw)  # two assignments: not an answer
    assert ambiguous.reward == 0.0 and ambiguous.extraction.source == "last_number"


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("42", 42),
        ("\\text{42}", 42),
        ("\\mathrm{42}", 42),
        (" 42 ", 42),
        ("18 \\text{ cm}", 18),
        ("\\text{42 apples}", 42),
        ("42 apples", 42),
        ("x = 42", 42),
        ("x=42", 42),
        ("n = \\frac{15}{2}", Fraction(15, 2)),
        ("\\$1{,}234", 1234),
        ("2.5 \\cdot 10^{-3}", Fraction(1, 400)),
        ("3 \\times 10^2", 300),
        ("50\\%", 50),
        ("1e3", 1000),
    ],
)
def test_boxed_value_reads(content, value):
    assert boxed_value(content) == Fraction(value)


@pytest.mark.parametrize(
    "content",
    ["", " ", "x", "x = y", "3 or 4", "a = 3, b = 4", "a = 3 \\quad b = 4", "10km", "42 + 1", "\\text{}", "= "],
)
def test_boxed_value_rejects(content):
    assert boxed_value(content) is None

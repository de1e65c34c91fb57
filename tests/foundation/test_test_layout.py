"""Test folders have no __init__.py, so pytest imports test modules by basename: two files
with one name in tests/ break collection of the whole folder. Keep them unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_module_basenames_under_tests_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py" and "fixtures" not in p.parts)
    dupes = sorted(n for n, c in names.items() if c > 1)
    assert not dupes, f"rename these so each basename is unique under tests/: {dupes}"

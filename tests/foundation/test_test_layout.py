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


def test_no_test_imports_a_conftest_module() -> None:
    """``from conftest import ...`` gets whichever conftest.py was imported first when one
    pytest run covers several folders (CI runs tests/ at once); share through fixtures."""
    offenders = sorted(
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("*.py")
        if any(line.startswith(("from conftest import", "import conftest")) for line in p.read_text().splitlines())
    )
    assert not offenders, f"use fixtures instead of importing conftest in: {offenders}"

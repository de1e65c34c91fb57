"""Issue 22's corpus: every broken config in ``config_corpus/`` (``index.toml`` says which mistake
each one makes) fails ``skyrl config validate`` and ``skyrl train`` start-up with exit code 2 and
one line per problem naming its key path (and line, where the file gives one), without a
traceback and before anything is built.

``base.toml`` is the valid file the others are made from; its model folder is a real tiny model
(``tiny_model_dir``) so that a mistake that slipped through validation would load it and train,
and fail this test. Every file runs through the in-process CLI (``run_skyrl``), a few of each
kind through the real ``skyrl`` console script. Times are printed (run with ``-s``), not asserted:
the machine may be loaded.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import tomllib
from foundation_support import BASE_TOML

from skyrl_core.testing import run_skyrl

CORPUS = Path(__file__).resolve().parent / "config_corpus"
CASES = tomllib.loads((CORPUS / "index.toml").read_text())["case"]
BY_FILE = {case["file"]: case for case in CASES}
# one file of each kind of mistake, also run through the real console script
SUBPROCESS = [
    "seed_too_large.toml",
    "lr_inf.toml",
    "model_path_empty.toml",
    "list_for_table.toml",
    "duplicate_key.toml",
    "latin1_byte.toml",
    "very_deep_arrays.toml",
    "component_typo.toml",
]


def check_report(case: dict, code: int, out: str, err: str) -> None:
    """Exit 2; ``error: FILE: N errors`` then one ``  - path: message (line N)`` line per problem;
    the case's key path, message and line among them; no traceback."""
    where = f"{case['file']} ({case['mistake']})"
    assert code == 2, f"{where}: exit code {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err, f"{where}: a traceback was shown:\n{err}"
    lines = err.splitlines()
    assert lines and re.match(r"error: .+: \d+ errors? in the configuration$", lines[0]), f"{where}:\n{err}"
    assert all(line.startswith(("  - ", "  ... and ")) for line in lines[1:]), f"{where}: not one line each:\n{err}"
    path = re.escape(case["path"])
    found = [
        line for line in lines[1:]
        if (not case["path"] or re.match(rf"  - {path}(: |[.\[])", line)) and case["message"] in line
    ]
    assert found, f"{where}: no problem at {case['path']!r} saying {case['message']!r}:\n{err}"
    if "line" in case:
        at_line = re.compile(rf"\bline {case['line']}\b")
        assert any(at_line.search(line) for line in found), f"{where}: no line {case['line']}:\n{err}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """Where the corpus's relative paths point: ``model`` is a real tiny model; there is no data."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "model").symlink_to(tiny_model_dir, target_is_directory=True)
    return root


def test_the_corpus_has_one_indexed_file_per_mistake() -> None:
    files = {p.name for p in CORPUS.glob("*.toml")} - {"base.toml", "index.toml"}
    assert files == set(BY_FILE), f"unindexed: {files - set(BY_FILE)}; missing: {set(BY_FILE) - files}"
    assert len(CASES) >= 60
    assert len({case["mistake"] for case in CASES}) == len(CASES), "two files describe the same mistake"


def test_the_base_file_is_valid(workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(workdir)
    assert run_skyrl(["config", "validate", str(CORPUS / "base.toml")]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("name", sorted(BY_FILE))
def test_a_broken_file_is_one_line_per_problem(
    name: str, command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.chdir(workdir)
    argv = ["config", "validate"] if command == "validate" else ["train"]
    capsys.readouterr()
    start = time.perf_counter()
    code = run_skyrl([*argv, str(CORPUS / name)])
    took = time.perf_counter() - start
    captured = capsys.readouterr()
    check_report(BY_FILE[name], code, captured.out, captured.err)
    assert not (workdir / "runs").exists() and not (workdir / "data").exists(), "start-up went past the config"
    print(f"skyrl {' '.join(argv)} {name}: exit {code} in {took:.2f} s (in-process)")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("name", SUBPROCESS)
def test_a_broken_file_through_the_console_script(name: str, command: str, skyrl, tmp_path: Path, tiny_model_dir):
    (tmp_path / "model").symlink_to(tiny_model_dir, target_is_directory=True)
    argv = ["config", "validate"] if command == "validate" else ["train"]
    start = time.perf_counter()
    result = skyrl(*argv, str(CORPUS / name), dists=[])
    took = time.perf_counter() - start
    check_report(BY_FILE[name], result.code, result.out, result.err)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
    print(f"skyrl {' '.join(argv)} {name}: exit {result.code} in {took:.2f} s (console script)")


def test_a_generated_file_with_300000_unknown_keys_gets_a_short_report(skyrl, tmp_path: Path) -> None:
    """The report lists the first problems and counts the rest, and stays fast (the time is printed)."""
    stray = "".join(f"key_{i} = {i}\n" for i in range(300_000))
    path = tmp_path / "huge.toml"
    text = BASE_TOML.replace("[backend]", "[trainer]\n" + stray + "\n[backend]")
    path.write_text(text)
    first_line = text[: text.index("key_0 =")].count("\n") + 1
    start = time.perf_counter()
    result = skyrl("config", "validate", str(path))
    took = time.perf_counter() - start
    err = result.failed_cleanly()
    lines = err.splitlines()
    assert lines[0] == f"error: {path}: 300000 errors in the configuration"
    assert len(lines) <= 25 and len(err) < 10_000, f"{len(lines)} lines, {len(err)} characters"
    assert lines[1].startswith("  - trainer.key_0: unknown key.") and lines[1].endswith(f"(line {first_line})")
    assert lines[-1] == "  ... and 299980 more (the first 20 are shown; fix those first)"
    print(f"skyrl config validate with 300000 unknown keys ({path.stat().st_size / 1e6:.1f} MB): {took:.2f} s")


@pytest.mark.parametrize(
    ("extra", "count", "first"),
    [
        ("[environments]\n" + "".join(f"env_{i} = {{}}\n" for i in range(100_000)), 100_000,
         "  - environments.env_0: no environment named 'env_0'."),
        ("[data]\ntrain = [" + ", ".join(str(i) for i in range(100_000)) + "]\n", 101,
         "  - data.train[0]: expected a string, got 0 (int)"),
        ("".join(f"[section_{i}]\n" for i in range(100_000)), 100_000, "  - section_0: unknown section [section_0]."),
    ],
    ids=["unknown-environments", "a-long-list-of-wrong-items", "unknown-sections"],
)
def test_other_generated_files_get_short_reports(extra, count, first, everything, tmp_path):
    from skyrl_core.config.loader import load_config
    from skyrl_core.errors import ConfigError
    from skyrl_core.testing import fresh_registry

    path = tmp_path / "generated.toml"
    path.write_text(BASE_TOML + extra)
    with pytest.raises(ConfigError) as exc:
        load_config(path, registry=fresh_registry(everything))
    lines = str(exc.value).splitlines()
    assert lines[0] == f"{path}: {count} errors in the configuration"
    assert lines[1].startswith(first) and len(lines) == 2 + ConfigError.MAX_SHOWN
    if count == 101:  # a list: the first 100 wrong items, then what was not checked
        assert exc.value.issues[-1].message == (
            "the first 100 wrong items are listed; the 99900 items after index 99 were not checked"
        )

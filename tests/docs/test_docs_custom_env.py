"""docs/custom_environments.md: the page shows the example package's files exactly, and the package
works as the page says: pip installs it, its entry point registers its components, its own
tests pass, and the page's commands (prepare, validate, train, eval) run on a tiny model.

The package is installed with pip into a temporary folder (``--target``) that is put on
``sys.path``, so ``importlib.metadata`` finds its entry point as it would in site-packages,
without touching the test venv.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from docs_support import DOCS, REPO, blocks, commands, named_toml

from skyrl_core.cli import main

PAGE = "custom_environments.md"
PACKAGE = DOCS / "examples" / "skyrl_env_lettercount"


def test_the_page_shows_every_file_of_the_package_exactly():
    shown = {b.marker[len("file "):]: b.body for b in blocks(DOCS / PAGE) if b.marker and b.marker.startswith("file ")}
    files = {
        str(p.relative_to(PACKAGE)): p.read_text()
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.name != "__init__.py" and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    }
    assert set(shown) == set(files), (set(shown) ^ set(files))
    for name, body in files.items():
        assert shown[name] == body, f"docs/{PAGE} shows {name} differently from {PACKAGE / name}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install --target`` of the package (a real setuptools build, no network)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / PACKAGE.name  # setuptools writes build files into the source
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300, cwd=target,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("skyrl_env_lettercount-0.1.0.dist-info/entry_points.txt"))
    yield target
    for mod in [m for m in sys.modules if m.startswith("skyrl_env_lettercount")]:
        del sys.modules[mod]


@pytest.mark.slow
def test_the_installed_package_works_as_the_page_says(installed, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.delenv("SKYRL_LOAD_PLUGINS", raising=False)
    importlib.invalidate_caches()
    monkeypatch.chdir(tmp_path)
    Path("letters.toml").write_text(named_toml(PAGE, "letters.toml"))

    ran = []
    for block in blocks(DOCS / PAGE):
        if block.lang != "bash":
            continue
        for cmd in commands(block):
            program = cmd.argv[0]
            if program == "pip":
                assert cmd.argv[2] == f"./{PACKAGE.relative_to(REPO)}"  # what the fixture installed
                continue
            if program == "pytest":  # the package's own tests, as a user runs them, against the install
                env = dict(os.environ, PYTHONPATH=str(installed))
                paths = [str(REPO / a) for a in cmd.argv[1:]]  # run from elsewhere: `-m` puts the cwd on sys.path
                proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths],
                                      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                assert "4 passed" in proc.stdout
                ran.append("pytest")
                continue
            capsys.readouterr()
            code = main(cmd.argv[1:])
            out = capsys.readouterr().out
            assert code == 0, f"{block.where}: `{cmd.text}` exited {code}"
            ran.append(" ".join(cmd.argv[1:3]))
            if cmd.argv[1] == "plugins":
                (line,) = [x for x in out.splitlines() if x.startswith("skyrl-env-lettercount")]
                assert line.split()[1:3] == ["0.1.0", "ok"], line
            if cmd.argv[1] == "components":
                assert "letter_count" in out and "[skyrl-env-lettercount]" in out

    assert ran == ["plugins", "components environment", "data prepare", "pytest",
                   "config validate", "train letters.toml", "eval letters.toml"], ran
    rows = pq.read_table("data/letters/train.parquet").to_pylist()
    assert len(rows) == 64 and {r["max_turns"] for r in rows} == {2}
    steps = [json.loads(line) for line in Path("runs/letters/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps] == [0, 1, 2]
    assert "reward/letter_count/solved" in steps[-1] and "reward/letter_count/turns" in steps[-1]
    samples = [json.loads(line) for line in Path("runs/letters/eval/samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and {s["env_class"] for s in samples} == {"letter_count"}
    retried = [s for s in samples if s["num_turns"] == 2]
    assert all(len(s["turns"]) == 3 for s in retried)  # reply, feedback, reply
    assert all(s["turns"][1]["content"].endswith("Try again.") for s in retried)


def test_a_bad_option_is_reported_with_its_key_path(installed, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.delenv("SKYRL_LOAD_PLUGINS", raising=False)
    importlib.invalidate_caches()
    monkeypatch.chdir(tmp_path)
    Path("letters.toml").write_text(named_toml(PAGE, "letters.toml"))
    code = main(["config", "validate", "letters.toml", "environments.letter_count.correct_reward=-1",
                 "environments.letter_count.feedbak=false"])
    err = capsys.readouterr().err
    assert code == 2
    assert "environments.letter_count.correct_reward: must be >= 0, got -1" in err
    assert "environments.letter_count.feedbak: unknown key. Did you mean 'feedback'?" in err

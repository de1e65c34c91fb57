"""docs/migrating_from_skyrl.md against the translation table and the real command: its key map is
the table's, every SkyRL key it names is in the table (its own keys in code spans are checked by
test_docs_snippets.py), the example prints what the page shows, and the quoted errors are real."""

from __future__ import annotations

import importlib.util
import re

import pytest
from docs_support import DOCS, blocks, commands

from skyrl_core.config.skyrl_keys import TABLE, key_map_markdown, lookup
from skyrl_core.testing import run_skyrl

PAGE = DOCS / "migrating_from_skyrl.md"
SKYRL_KEY = re.compile(r"(?<![\w.`/-])\+{0,2}((?:trainer|generator|data|environment)\.[A-Za-z_][\w.]*\w)")


def prose() -> str:
    """The page without fenced blocks and code spans (where our keys and commands are)."""
    text = re.sub(r"^```.*?^```", "", PAGE.read_text(), flags=re.MULTILINE | re.DOTALL)
    return re.sub(r"`[^`\n]*`", "", text)


def test_the_key_map_is_the_translation_table():
    text = PAGE.read_text()
    shown = text.split("<!-- key map: generated -->\n")[1].split("<!-- key map: end -->")[0]
    assert shown == key_map_markdown(), "regenerate the key map of docs/migrating_from_skyrl.md"


def test_every_skyrl_key_the_page_names_is_in_the_table():
    named = set(SKYRL_KEY.findall(prose()))
    assert len(named) > 150  # the key map and the prose
    sections = {e.key.rsplit(".", i)[0] for e in TABLE for i in range(1, e.key.count(".") + 1)}
    unknown = sorted(k for k in named - sections if not k.endswith((".md", ".yaml"))
                     and lookup(k.replace(".ID.KEY", ".text2sql.db_path")) is None)
    assert not unknown, f"docs/migrating_from_skyrl.md names SkyRL keys the translation table lacks: {unknown}"


def test_the_key_finder_sees_plain_keys_only():
    assert "trainer.promts_per_step" in SKYRL_KEY.findall("a trainer.promts_per_step here")
    assert SKYRL_KEY.findall("a trainer.train_batch_size and +trainer.algorithm.overlong_buffer.len.") == [
        "trainer.train_batch_size", "trainer.algorithm.overlong_buffer.len"]
    assert SKYRL_KEY.findall("ours: `trainer.prompts_per_step`, path skyrl_train/config/x") == []


def test_the_example_prints_what_the_page_shows(tmp_path, capsys, monkeypatch):
    bash = next(b for b in blocks(PAGE) if b.lang == "bash")
    (command,) = list(commands(bash))
    shown = next(b for b in blocks(PAGE) if b.lang == "text").body
    monkeypatch.chdir(tmp_path)
    argv = command.argv[1:]
    have_gym = importlib.util.find_spec("skyrl_gym") is not None
    # without skyrl-gym the adapter's environment does not validate here: the report is the same
    code = run_skyrl(argv if have_gym else [*argv, "--no-validate"])
    out = capsys.readouterr().out
    assert code == 0
    real, shown_head = out.rsplit("\nwrote", 1)[0], shown.rsplit("\nwrote", 1)[0]
    assert real == shown_head
    assert shown.rstrip().endswith("wrote run.toml")
    written = next(b for b in blocks(PAGE) if b.lang == "toml")
    assert written.skipped and written.body == (tmp_path / "run.toml").read_text()


def assert_quoted(block: str, message: str) -> None:
    """Every part of ``block`` between ``...`` appears in ``message``, in order (whitespace-normalized)."""
    text = " ".join(message.split())
    at = 0
    for part in (" ".join(p.split()) for p in block.split("...")):
        if part:
            found = text.find(part, at)
            assert found >= 0, f"not in the real message:\n  {part}\n  {text}"
            at = found + len(part)


@pytest.fixture
def quoted():
    return [b.body for b in blocks(PAGE) if b.lang == "text"][1:]


def test_the_quoted_errors_are_real(tmp_path, capsys, monkeypatch, quoted):
    unplaceable, unknown = quoted
    monkeypatch.chdir(tmp_path)
    code = run_skyrl(["config", "import-skyrl", "--out", "run.toml", "--env", "native", "--set", "trainer.steps=2",
                      "trainer.algoritm.gamma=0.9", "trainer.strategy=megatron",
                      "generator.sampling_params.repetition_penalty=1.1"])
    assert code == 2
    assert_quoted(unplaceable, capsys.readouterr().err)
    (tmp_path / "run.toml").write_text('[model]\npath = "m"\n\n[generator]\nn_samples_per_prompt = 5\n\n'
                                       '[trainer.policy.model]\npath = "Qwen/Qwen2.5-1.5B-Instruct"\n')
    assert run_skyrl(["config", "validate", "run.toml"]) == 2
    assert_quoted(unknown, capsys.readouterr().err)

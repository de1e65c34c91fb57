"""docs/quickstart.md and docs/batch_sizes.md: the commands run and print what the pages show.

The quickstart's CPU commands run in a temporary folder with a shortened schedule (the full
run takes minutes; the lead's trainer tests check that it learns); afterwards every file the
page's table names exists. The batch-size page's plan table is exactly what
``skyrl config show`` prints for the page's config.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from docs_support import DOCS, REPO, blocks, commands, named_toml

from skyrl_core.cli import main

SHORTER = ["warm_start.steps=5", "trainer.steps=2", "trainer.prompts_per_step=4", "eval.every=1",
           "checkpoint.every=1", "data.generate_options.eval_rows=8"]


def _cpu_commands() -> list[list[str]]:
    """The skyrl commands of the page's CPU section (the tiny-model quickstart), in order. The next
    section's real-model run is skyrl_env_gsm8k/tests/test_smollm2_recipe.py's business."""
    text = (DOCS / "quickstart.md").read_text()
    cpu_end = len(text[: text.index("## A real model on a CPU")].splitlines())
    return [c.argv for b in blocks(DOCS / "quickstart.md") if b.lang == "bash" and b.line < cpu_end
            for c in commands(b) if c.argv[0] == "skyrl"]


@pytest.mark.slow
def test_the_cpu_quickstart_commands_run_and_write_what_the_page_lists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argvs = _cpu_commands()
    assert [a[1] for a in argvs] == ["doctor", "train", "eval", "train"]
    for argv in argvs[:3]:  # doctor, the quickstart, the eval of its export (the last one is a variant)
        args = [a.replace("examples/", f"{REPO}/examples/") for a in argv[1:]]
        if argv[1] == "train":
            args += SHORTER
        capsys.readouterr()
        assert main(args) == 0, " ".join(argv)
        out = capsys.readouterr().out
        if argv[1] == "eval":
            assert re.search(r"^eval/arithmetic/pass@1\s+\d\.\d{4}$", out, flags=re.MULTILINE), out

    run = Path("runs/quickstart")
    page = (DOCS / "quickstart.md").read_text()
    table = page.split("| path | what |", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"^\| `([^`]+)`(?:, `([^`]+)`)? \|", table, flags=re.MULTILINE)
    assert len(listed) >= 8
    for names in listed:
        for name in filter(None, names):
            name = name.replace("step-000010", "step-000002")  # the shortened run's last eval
            assert (run / name).exists(), f"docs/quickstart.md lists {name}, the run did not write it"
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]
    assert (run / "eval" / "samples.jsonl").is_file()  # written by the page's `skyrl eval`


def test_the_batch_plan_on_the_page_is_what_config_show_prints(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("batch.toml").write_text(named_toml("batch_sizes.md", "batch.toml"))
    page_blocks = blocks(DOCS / "batch_sizes.md")
    (command,) = [c for b in page_blocks if b.lang == "console" for c in commands(b)]
    assert command.argv == ["skyrl", "config", "show", "batch.toml"]
    capsys.readouterr()
    assert main(command.argv[1:]) == 0
    printed = capsys.readouterr().out
    (plan,) = [b.body for b in page_blocks if b.lang == "text" and b.body.startswith("# batch plan")]
    assert plan.strip() in printed, f"skyrl config show prints\n{printed}"
    # The worked example's numbers are those of the table.
    rows = dict(line.rsplit(None, 1) for line in plan.strip().splitlines()[3:])
    text = (DOCS / "batch_sizes.md").read_text()
    for label, number in [("sequences per step", "512"), ("optimizer steps in the run", "800"),
                          ("micro-batches per mini-batch (worst case)", "13")]:
        assert rows[label] == number
        assert f"**{number}**" in text

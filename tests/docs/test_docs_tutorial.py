"""docs/tutorial.md, executed: every command and code block in page order, on a tiny model.

Named TOML blocks (``# gsm8k_tutorial.toml``) are written to files, ``skyrl`` commands run
in-process in a temporary folder, Python blocks run in one namespace. Training is shortened
with overrides (fewer warm-start and GRPO steps, fewer eval rows); everything else is the
page's text. ``pip install`` lines are not run (the plugin is installed in the test venv);
test_docs_commands.py validates them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from docs_support import DOCS, blocks, commands

from skyrl_core.cli import main

PAGE = "tutorial.md"
SHORTER = {
    "train": ["warm_start.steps=6", "trainer.steps=2", "eval.max_rows=4"],
    "eval": ["eval.max_rows=4"],
}


@pytest.mark.slow
def test_the_tutorial_runs_from_data_to_transformers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    ran: list[str] = []
    for block in blocks(DOCS / PAGE):
        if block.lang == "toml" and block.body.startswith("# "):
            name = block.body.splitlines()[0][2:].strip()
            Path(name).write_text(block.body)
        elif block.lang == "python":
            exec(compile(block.body, f"{block.where}", "exec"), namespace)
            ran.append("python")
        elif block.lang == "bash":
            for cmd in commands(block):
                if cmd.argv[0] == "pip":
                    continue
                assert cmd.argv[0] == "skyrl", cmd.text
                argv = cmd.argv[1:] + SHORTER.get(cmd.argv[1], [])
                capsys.readouterr()
                code = main(argv)
                out = capsys.readouterr()
                assert code == 0, f"{block.where}: `{cmd.text}` exited {code}\n{out.out}\n{out.err}"
                ran.append(" ".join(cmd.argv[1:3]))
                if cmd.argv[1] == "eval":
                    assert re.search(r"^eval/gsm8k/pass@4\s+\d\.\d{4}$", out.out, flags=re.MULTILINE), out.out
                if cmd.argv[1] == "components":
                    assert "gsm8k_multi_turn" in out.out

    assert ran.count("python") == 2
    wanted = {"data prepare", "config validate", "config show", "train gsm8k_tutorial.toml"}
    wanted.add("export gsm8k_tutorial.toml")
    assert wanted <= set(ran), ran

    # 1. data: the second preparer (local JSONL) wrote the final files
    assert Path("grade_school_math/data/train.jsonl").is_file()
    train = pq.read_table("data/gsm8k/train.parquet").to_pylist()
    assert len(train) == 256 and train[0]["env_class"] == "gsm8k"
    assert pq.read_table("data/gsm8k/test.parquet").num_rows == 32
    assert {"prompt", "response"} <= set(pq.read_table("data/gsm8k/sft.parquet").column_names)

    # 3. training outputs named on the page
    run = Path("runs/gsm8k-tutorial")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2]
    assert (run / "eval/step-000002/samples.jsonl").is_file()
    assert (run / "checkpoints/step-000002").is_dir()
    assert (run / "warm_start/model/config.json").is_file()

    # 4. eval wrote its files with 4 samples per prompt
    summary = json.loads((run / "eval/summary.json").read_text())
    assert summary["samples_per_prompt"] == 4
    assert len((run / "eval/samples.jsonl").read_text().splitlines()) == 4 * summary["num_prompts"]

    # 5-6. both exports are Hugging Face folders; the Python block loaded one and generated
    for folder in (run / "export", run / "step-2-hf"):
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert namespace["model"].config.hidden_size == 64
    assert isinstance(namespace["reply"], str)
    assert namespace["output"].shape[1] > namespace["inputs"]["input_ids"].shape[1]

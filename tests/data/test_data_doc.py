"""docs/data.md: every TOML snippet validates, the Python runs, and the `skyrl` commands work."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skyrl_core.cli import main
from skyrl_core.config.loader import parse_config
from skyrl_core.testing import fresh_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
TEXT = DOC.read_text(encoding="utf-8")
TOML = re.findall(r"```toml\n(.*?)```", TEXT, flags=re.DOTALL)
PYTHON = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
COMMANDS = [line[2:] for block in re.findall(r"```console\n(.*?)```", TEXT, flags=re.DOTALL)
            for line in block.splitlines() if line.startswith("$ ")]
JSON = re.findall(r"```json\n(.*?)```", TEXT, flags=re.DOTALL)


def named_toml(name: str) -> str:
    (snippet,) = [s for s in TOML if s.startswith(f"# {name}\n")]
    return snippet


def test_the_page_has_its_examples():
    assert len(TOML) == 3 and len(PYTHON) == 2 and len(COMMANDS) == 2 and len(JSON) == 1


@pytest.mark.parametrize("index", range(len(TOML)))
def test_toml_snippets_validate(index):
    raw = tomllib.loads(TOML[index])
    raw.setdefault("model", {"path": "m"})
    cfg = parse_config(raw, fresh_registry(), source=f"docs/data.md snippet {index + 1}")
    for key, value in raw.get("data", {}).items():
        assert getattr(cfg.data, key) == value


def test_json_row_is_valid(tmp_path):
    from skyrl_core.data import load_prompt_rows

    row = json.loads(JSON[0])
    (tmp_path / "row.jsonl").write_text(json.dumps(row) + "\n")
    (parsed,) = load_prompt_rows([str(tmp_path / "row.jsonl")], registry=fresh_registry()).rows
    assert parsed.env_class == "arithmetic" and parsed.extras["reward_spec"]["ground_truth"] == "68"


def test_python_snippets_run(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    namespace = {"MODEL": str(tiny_model_dir)}
    for snippet in PYTHON:
        exec(compile(snippet, str(DOC), "exec"), namespace)
    assert pq.read_table("my_sums.parquet").num_rows == 100
    assert len(namespace["batch"]) == 8 and namespace["state"]["position"] == 8


def test_prepare_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (prepare,) = [c for c in COMMANDS if c.startswith("skyrl data prepare")]
    assert main(shlex.split(prepare)[1:]) == 0
    assert pq.read_table("data/arith/train.parquet").num_rows == 2000
    assert pq.read_table("data/arith/eval.parquet").num_rows == 100
    ops = {r["extra_info"]["expression"].split()[1] for r in pq.read_table("data/arith/train.parquet").to_pylist()}
    assert ops == {"+", "-"}


def test_skyrl_eval_on_a_tiny_model_and_generated_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("arith_eval.toml").write_text(named_toml("arith_eval.toml"))
    (command,) = [c for c in COMMANDS if c.startswith("skyrl eval")]
    assert main(shlex.split(command)[1:]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^eval/all/score\s+\d\.\d{4}$", printed, flags=re.MULTILINE)
    assert "eval/arithmetic/pass@4" in printed
    assert Path("data/arith/eval.parquet").is_file()  # created by data.generate
    summary = json.loads(Path("runs/arith-eval/eval/summary.json").read_text())
    assert summary["num_prompts"] == 8 and summary["samples_per_prompt"] == 4
    samples = Path("runs/arith-eval/eval/samples.jsonl").read_text().splitlines()
    assert len(samples) == 32
    assert {"prompt", "response", "reward", "finish_reason", "data_source"} <= set(json.loads(samples[0]))

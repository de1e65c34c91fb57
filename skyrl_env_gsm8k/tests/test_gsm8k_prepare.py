"""The gsm8k and gsm8k_synthetic dataset preparers: round trip through core's data loading and the env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from skyrl_env_gsm8k.config import INSTRUCTION, Gsm8kPrepareConfig
from skyrl_env_gsm8k.prepare import final_answer, load_hub, prepare_gsm8k, strip_calculator
from skyrl_env_gsm8k.synthetic import make_problems, write_jsonl

from skyrl_core.api import ConfigError, DataError, Kind, load_prompt_rows, read_source, run_preparer
from skyrl_core.testing import fresh_registry
from skyrl_core.testing import run_skyrl as skyrl
from skyrl_env_gsm8k import plugin


@pytest.fixture
def registry():
    return fresh_registry(plugin)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_cli_round_trip(gsm8k_dir, tmp_path, registry, capsys):
    """GSM8K JSONL -> `skyrl data prepare gsm8k` -> parquet -> core loader -> env: reward 1 for the reference."""
    out = tmp_path / "prepared"
    assert skyrl(["data", "prepare", "gsm8k", "--out", str(out), "--data-dir", str(gsm8k_dir)]) == 0
    printed = capsys.readouterr().out
    for split in ("train", "test", "eval", "sft"):
        assert f"{split}: " in printed
    assert sorted(p.name for p in out.iterdir()) == ["sft.parquet", "test.parquet", "train.parquet"]

    source = _records(gsm8k_dir / "train.jsonl")
    ds = load_prompt_rows([str(out / "train.parquet")], registry=registry, what="data.train")
    assert len(ds) == len(source) == 24
    env_cls = registry.get(Kind.ENVIRONMENT, "gsm8k").load()
    for i, (row, rec) in enumerate(zip(ds.rows, source, strict=True)):
        assert row.env_class == "gsm8k" and row.data_source == "gsm8k"
        assert row.prompt == [{"role": "user", "content": f"{rec['question']}\n\n{INSTRUCTION}"}]
        assert row.extras["reward_spec"] == {"method": "rule", "ground_truth": final_answer(rec["answer"])}
        assert row.extras["extra_info"] == {
            "split": "train",
            "index": i,
            "question": rec["question"],
            "answer": rec["answer"],
        }
        env = env_cls(None, {**row.extras, "max_turns": 1})
        assert env.step(strip_calculator(rec["answer"])).reward == 1.0  # the reference solution is correct
        assert env_cls(None, {**row.extras, "max_turns": 1}).step("#### -1").reward == 0.0

    test = load_prompt_rows([str(out / "test.parquet")], registry=registry)
    assert [r.extras["extra_info"]["question"] for r in test.rows] == [
        r["question"] for r in _records(gsm8k_dir / "test.jsonl")
    ]
    assert {r.extras["extra_info"]["split"] for r in test.rows} == {"test"}

    sft = read_source(str(out / "sft.parquet"))
    assert len(sft) == 24
    for row, rec in zip(sft, source, strict=True):
        assert "<<" not in row["response"] and row["response"].endswith(f"#### {final_answer(rec['answer'])}")
        assert row["prompt"] == [{"role": "user", "content": f"{rec['question']}\n\n{INSTRUCTION}"}]


def test_options(gsm8k_dir, tmp_path, registry):
    files = run_preparer(
        "gsm8k",
        tmp_path / "out",
        {
            "train_file": str(gsm8k_dir / "train.jsonl"),
            "max_train_rows": 5,
            "env_class": "gsm8k_multi_turn",
            "system_prompt": "You are a careful tutor.",
            "instruction": "",
            "sft": False,
        },
        registry,
    )
    assert sorted(files) == ["train"]
    rows = read_source(str(files["train"]))
    assert len(rows) == 5
    first = _records(gsm8k_dir / "train.jsonl")[0]
    assert rows[0]["env_class"] == "gsm8k_multi_turn"
    assert rows[0]["prompt"] == [
        {"role": "system", "content": "You are a careful tutor."},
        {"role": "user", "content": first["question"]},
    ]


def test_bad_options_are_config_errors(tmp_path, registry):
    with pytest.raises(ConfigError, match=r"max_train_rows.*must be > 0"):
        run_preparer("gsm8k", tmp_path, {"max_train_rows": 0}, registry)
    with pytest.raises(ConfigError, match=r"train_fil.*Did you mean 'train_file'"):
        run_preparer("gsm8k", tmp_path, {"train_fil": "x.jsonl"}, registry)


def test_hub_code_path_reads_a_datasets_folder(gsm8k_dir):
    """load_hub is what runs for openai/gsm8k; here `datasets` reads a local folder through the same call."""
    records = load_hub(str(gsm8k_dir), "default")
    assert [r["question"] for r in records["train"]] == [r["question"] for r in _records(gsm8k_dir / "train.jsonl")]
    assert len(records["test"]) == 8


def test_hub_failure_says_how_to_work_offline(tmp_path):
    with pytest.raises(DataError, match=r"could not load the dataset .*--data-dir FOLDER"):
        prepare_gsm8k(Gsm8kPrepareConfig(hub_id=str(tmp_path / "nowhere")), tmp_path / "out")


def test_synthetic_preparer_splits_are_disjoint(tmp_path, registry):
    files = run_preparer("gsm8k_synthetic", tmp_path, {"train_rows": 40, "test_rows": 10, "sft_rows": 20}, registry)
    assert sorted(files) == ["eval", "sft", "test", "train"]
    assert files["eval"] == files["test"]
    train = load_prompt_rows([str(files["train"])], registry=registry)
    test = load_prompt_rows([str(files["eval"])], registry=registry)
    sft = read_source(str(files["sft"]))
    assert (len(train), len(test), len(sft)) == (40, 10, 20)
    held_out = {r.extras["extra_info"]["question"] for r in test.rows}
    assert not held_out & {r.extras["extra_info"]["question"] for r in train.rows}
    assert not held_out & {r["prompt"][-1]["content"].split("\n\n")[0] for r in sft}


@pytest.mark.parametrize("level", ["standard", "easy"])
def test_synthetic_answers_are_computed_correctly(level):
    """Every step of every template solution re-evaluates to its stated result."""
    import re

    for rec in make_problems(200, seed=11, level=level):
        for expr, value in re.findall(r"<<([^=<>]+)=(-?\d+)>>", rec["answer"]):
            assert eval(expr, {"__builtins__": {}}) == int(value), (expr, value)
        last_calc = re.findall(r"<<[^=<>]+=(-?\d+)>>", rec["answer"])[-1]
        assert final_answer(rec["answer"]) == last_calc
        assert int(last_calc) > 0


def test_synthetic_easy_level(tmp_path, registry):
    """`level = "easy"`: one-operation problems (one calculator step each), disjoint splits, every template used."""
    import re

    from skyrl_env_gsm8k.synthetic import EASY_TEMPLATES

    problems = make_problems(300, seed=3, level="easy")
    assert all(len(re.findall(r"<<", r["answer"])) == 1 for r in problems)
    assert all(int(final_answer(r["answer"])) < 200 for r in problems)
    openings = {r["question"].split(".")[0].split()[1] for r in problems}  # the verb after the name / noun
    assert len(openings) >= len(EASY_TEMPLATES) - 1
    files = run_preparer("gsm8k_synthetic", tmp_path, {"train_rows": 50, "test_rows": 20, "sft_rows": 0,
                                                       "level": "easy"}, registry)
    train = load_prompt_rows([str(files["train"])], registry=registry)
    test = load_prompt_rows([str(files["eval"])], registry=registry)
    held_out = {r.extras["extra_info"]["question"] for r in test.rows}
    assert len(held_out) == 20 and not held_out & {r.extras["extra_info"]["question"] for r in train.rows}
    with pytest.raises(ConfigError, match=r"level"):
        run_preparer("gsm8k_synthetic", tmp_path / "bad", {"level": "hard"}, registry)


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_malformed_records_are_reported_with_line_and_field(tmp_path):
    good = json.dumps(make_problems(1)[0])
    bad = _write_lines(
        tmp_path / "train.jsonl",
        [
            good,
            "",
            json.dumps({"question": "How many?", "answer": "Five."}),
            json.dumps({"question": "", "answer": "#### 5"}),
            json.dumps({"question": "How many?", "answer": "#### five"}),
            json.dumps(["not", "an", "object"]),
        ],
    )
    with pytest.raises(DataError) as info:
        prepare_gsm8k(Gsm8kPrepareConfig(train_file=str(bad)), tmp_path / "out")
    text = str(info.value)
    assert "4 invalid GSM8K records" in text
    assert "line 3: field 'answer' must be a solution ending in '#### <number>'" in text
    assert "line 4: field 'question' must be non-empty text" in text
    assert "line 5: field 'answer': the text after the last '####' is not a number: 'five'" in text
    assert "line 6: expected a JSON object, got list" in text
    assert not (tmp_path / "out" / "train.parquet").exists()


def test_invalid_json_names_the_line(tmp_path):
    bad = _write_lines(tmp_path / "t.jsonl", [json.dumps(make_problems(1)[0]), '{"question": "x", '])
    with pytest.raises(DataError, match=r"t.jsonl: line 2: not valid JSON"):
        prepare_gsm8k(Gsm8kPrepareConfig(train_file=str(bad)), tmp_path / "out")


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(DataError, match=r"GSM8K file not found: .*missing.jsonl"):
        prepare_gsm8k(Gsm8kPrepareConfig(test_file=str(tmp_path / "missing.jsonl")), tmp_path / "out")
    with pytest.raises(DataError, match=r"--data-dir .*: no such folder"):
        prepare_gsm8k(Gsm8kPrepareConfig(data_dir=str(tmp_path / "none")), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"expected train.jsonl and/or test.jsonl, found: nothing"):
        prepare_gsm8k(Gsm8kPrepareConfig(data_dir=str(tmp_path / "empty")), tmp_path / "out")
    write_jsonl(tmp_path / "blank.jsonl", [])
    with pytest.raises(DataError, match=r"no GSM8K records found"):
        prepare_gsm8k(Gsm8kPrepareConfig(train_file=str(tmp_path / "blank.jsonl")), tmp_path / "out")


@pytest.mark.parametrize(
    ("solution", "expected"),
    [
        ("a\n#### 72", "72"),
        ("#### 1,000", "1000"),
        ("#### -3", "-3"),
        ("#### 2.50", "5/2"),
        ("#### x", None),
        ("72", None),
    ],
)
def test_final_answer(solution, expected):
    assert final_answer(solution) == expected

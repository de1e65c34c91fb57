"""Reading and validating SkyRL-format rows: files, row-level errors, length filter."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyrl_core.data import PromptDataset, load_prompt_rows, load_prompts
from skyrl_core.data.rows import split_source
from skyrl_core.errors import DataError
from skyrl_core.testing import fresh_registry


def good(i: int, **over) -> dict:
    row = {
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"What is {i} + 1?"}],
        "env_class": "arithmetic",
        "reward_spec": {"method": "rule", "ground_truth": str(i + 1)},
        "data_source": "toy",
        "extra_info": {"index": i},
        "db_id": f"db{i}",
    }
    row.update(over)
    return row


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def registry():
    return fresh_registry()


def test_parquet_json_and_jsonl_are_concatenated_with_extras(tmp_path, registry):
    pq.write_table(pa.Table.from_pylist([good(0), good(1)]), tmp_path / "a.parquet")
    write_jsonl(tmp_path / "b.jsonl", [good(2)])
    (tmp_path / "c.json").write_text(json.dumps([good(3), good(4, env_class=None, data_source=None)]))
    sources = [str(tmp_path / n) for n in ("a.parquet", "b.jsonl", "c.json")]
    ds = load_prompt_rows(sources, registry=registry, default_env_class="arithmetic")
    assert isinstance(ds, PromptDataset) and len(ds) == 5 and ds.num_read == 5
    assert [r.uid for r in ds.rows] == ["0", "1", "2", "3", "4"]
    first = ds[0]
    assert first.prompt[1] == {"role": "user", "content": "What is 0 + 1?"}
    assert first.env_class == "arithmetic" and first.data_source == "toy"
    # Every column but prompt/env_class reaches the environment.
    assert first.extras == {
        "reward_spec": {"method": "rule", "ground_truth": "1"},
        "data_source": "toy",
        "extra_info": {"index": 0},
        "db_id": "db0",
    }
    assert first.where == f"{sources[0]} row 0"
    assert ds[4].env_class == "arithmetic"  # default_env_class filled in
    assert ds[4].data_source == "arithmetic"  # no data_source: the env class


def test_bad_rows_give_row_level_errors(tmp_path, registry):
    rows = [
        good(0),
        good(1, prompt=None),
        good(2, prompt="What is 2 + 1?"),
        good(3, prompt=[{"role": "user", "content": 5}]),
        good(4, env_class=None),
        good(5, reward_spec=["rule", "3"]),
        good(6, extra_info="index 6"),
        good(7, max_turns=0),
        good(8, prompt=[]),
        good(9, prompt=[{"content": "no role"}]),
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_prompt_rows([str(path)], registry=registry, what="data.train")
    lines = str(info.value).splitlines()
    assert lines[0] == "data.train: 9 invalid rows:"
    expected = [
        "row 1, field 'prompt': is missing; every row needs a list of chat messages",
        "row 2, field 'prompt': is a string; it must be a list of chat messages",
        "row 3, field 'prompt': message 0: content must be a string, got int",
        "row 4, field 'env_class': missing or null and [data] default_env_class is not set",
        "row 5, field 'reward_spec': must be an object",
        "row 6, field 'extra_info': must be an object, got str",
        "row 7, field 'max_turns': must be a positive integer, got 0",
        "row 8, field 'prompt': must be a non-empty list of chat messages",
        "row 9, field 'prompt': message 0: role must be a non-empty string, got None",
    ]
    for line, text in zip(lines[1:], expected, strict=True):
        assert line.startswith(f"  - {path} {text}"), line


def test_wrongly_typed_parquet_column(tmp_path, registry):
    rows = [good(i, prompt=f"What is {i}?", env_class=i) for i in range(2)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "typed.parquet")
    with pytest.raises(DataError) as info:
        load_prompt_rows([str(tmp_path / "typed.parquet")], registry=registry)
    msg = str(info.value)
    assert msg.startswith("data: 4 invalid rows:")
    assert "typed.parquet row 1, field 'env_class': must be an environment name (string), got 1" in msg


def test_unknown_env_class_uses_the_registry_message_once(tmp_path, registry):
    rows = [good(0), good(1, env_class="arithmatic"), good(2, env_class="arithmatic")]
    f = write_jsonl(tmp_path / "envs.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_prompt_rows([str(f)], registry=registry, what="data.eval")
    msg = str(info.value)
    assert msg.count("no environment named 'arithmatic'") == 1
    assert f"{f} row 1 (and 1 more rows), field 'env_class'" in msg
    assert "Did you mean 'arithmetic'?" in msg and "Available: arithmetic (skyrl-core)" in msg


def test_many_errors_are_listed_then_counted(tmp_path, registry):
    f = write_jsonl(tmp_path / "many.jsonl", [good(i, data_source=7) for i in range(20)])
    with pytest.raises(DataError) as info:
        load_prompt_rows([str(f)], registry=registry)
    msg = str(info.value)
    assert msg.startswith("data: 20 invalid rows:")
    assert "... and 8 more" in msg and "field 'data_source': must be a string, got int" in msg


def test_missing_file_and_unreadable_source(tmp_path):
    with pytest.raises(DataError, match=r"data.train: file not found: .*nope.parquet. Check the path"):
        load_prompt_rows([str(tmp_path / "nope.parquet")], what="data.train")
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"could not read .*broken.parquet"):
        load_prompt_rows([str(tmp_path / "broken.parquet")])
    with pytest.raises(DataError, match="no data files given"):
        load_prompt_rows([])


def test_unsupported_file_types_and_broken_json_lines_name_the_problem(tmp_path):
    (tmp_path / "t.csv").write_text("prompt\nhi\n")
    with pytest.raises(DataError, match=r"data.train: .*t.csv: unsupported file type '.csv'; use .parquet"):
        load_prompt_rows([str(tmp_path / "t.csv")], what="data.train")
    good = json.dumps({"prompt": [{"role": "user", "content": "hi"}]})
    (tmp_path / "b.jsonl").write_text(f"{good}\n\n{good[:-1]}\n{good}\n")
    with pytest.raises(DataError, match=r"b.jsonl: line 3: Expecting ',' delimiter .*one JSON object"):
        load_prompt_rows([str(tmp_path / "b.jsonl")])
    (tmp_path / "c.jsonl").write_text(f"{good}\n[1, 2]\n")
    with pytest.raises(DataError, match=r"c.jsonl: line 2: expected a JSON object per line, got list"):
        load_prompt_rows([str(tmp_path / "c.jsonl")])


def test_dataset_folder_with_split(tmp_path, registry):
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([good(0), good(1)]), folder / "train.parquet")
    pq.write_table(pa.Table.from_pylist([good(2)]), folder / "test.parquet")
    assert len(load_prompt_rows([f"{folder}:test"], registry=registry)) == 1
    assert len(load_prompt_rows([str(folder)], registry=registry)) == 2  # default split: train
    with pytest.raises(DataError, match=r"could not read .*my_dataset:validation: .*Unknown split"):
        load_prompt_rows([f"{folder}:validation"], registry=registry)


def test_hub_names_are_split_into_name_and_split(tmp_path):
    assert split_source("openai/gsm8k:test") == ("openai/gsm8k", "test")
    assert split_source("openai/gsm8k") == ("openai/gsm8k", None)
    assert split_source(str(tmp_path / "x.parquet")) == (str(tmp_path / "x.parquet"), None)


def test_length_filter_drops_and_counts_then_too_few_rows_fails(tmp_path, tiny_model_dir, registry, caplog):
    from skyrl_core.config.schema import DataConfig, ModelConfig, RunConfig
    from skyrl_core.models.loading import load_tokenizer

    tok = load_tokenizer(ModelConfig(path=str(tiny_model_dir)))
    long = good(1, prompt=[{"role": "user", "content": "What is 1 + 1? " * 40}])
    f = write_jsonl(tmp_path / "mixed.jsonl", [good(0), long, good(2), long])
    cfg = RunConfig(model=ModelConfig(path=str(tiny_model_dir)), data=DataConfig(train=[str(f)], max_prompt_tokens=40))
    with caplog.at_level("WARNING"):
        ds = load_prompts(cfg, registry, tok, cfg.data.train, min_rows=2)
    assert [r.uid for r in ds.rows] == ["0", "2"] and ds.num_too_long == 2 and ds.num_read == 4
    assert "data.train: dropped 2 of 4 rows whose templated prompt is longer than max_prompt_tokens=40" in caplog.text
    with pytest.raises(DataError) as info:
        load_prompts(cfg, registry, tok, cfg.data.train, min_rows=3)
    assert re.search(
        r"data.train: 2 usable rows after dropping 2 rows longer than max_prompt_tokens=40, but at least 3 "
        r"are needed .* raise \[data\] max_prompt_tokens, or lower \[trainer\] prompts_per_step",
        str(info.value),
    )


def test_max_rows_reads_only_the_first_rows(tmp_path, registry):
    f = write_jsonl(tmp_path / "five.jsonl", [good(i) for i in range(5)])
    ds = load_prompt_rows([str(f), str(f)], registry=registry, max_rows=3)
    assert [r.prompt[1]["content"] for r in ds.rows] == [f"What is {i} + 1?" for i in range(3)]


# -- [data] env_map: rows keep their names (SkyRL's gsm8k), the run says which environment answers --


def test_env_map_replaces_names_after_the_default(tmp_path, registry):
    f = write_jsonl(tmp_path / "rows.jsonl", [good(0, env_class="gsm8k"), good(1, env_class=None), good(2)])
    rows = load_prompt_rows(
        [str(f)], registry=registry, default_env_class="gsm8k", env_map={"gsm8k": "arithmetic"}
    ).rows
    assert [r.env_class for r in rows] == ["arithmetic"] * 3
    assert "env_class" not in rows[0].extras  # the row's own name is not kept as an extra column


def test_an_unknown_env_map_replacement_is_reported_with_the_row_and_the_mapping(tmp_path, registry):
    f = write_jsonl(tmp_path / "rows.jsonl", [good(0), good(1, env_class="gsm8k"), good(2, env_class="gsm8k")])
    with pytest.raises(DataError) as exc:
        load_prompt_rows([str(f)], registry=registry, env_map={"gsm8k": "skyrl-env-nope:gsm8k"}, what="data.train")
    message = str(exc.value)
    assert "data.train: 1 invalid row:" in message
    mapping = "('gsm8k' -> 'skyrl-env-nope:gsm8k' by [data] env_map)"
    assert f"{f} row 1 (and 1 more rows), field 'env_class' {mapping}" in message
    assert "no environment named 'skyrl-env-nope:gsm8k'. Available: arithmetic (skyrl-core)." in message


def test_env_map_is_a_table_of_names_in_the_config(tmp_path, registry, tiny_model_dir):
    from skyrl_core.config.loader import parse_config
    from skyrl_core.errors import ConfigError

    f = write_jsonl(tmp_path / "rows.jsonl", [good(0, env_class="gsm8k"), good(1, env_class="gsm8k")])
    raw = {"model": {"path": str(tiny_model_dir)}, "data": {"train": [str(f)], "env_map": {"gsm8k": "arithmetic"}}}
    cfg = parse_config(raw, registry)
    assert cfg.data.env_map == {"gsm8k": "arithmetic"}
    assert [r.env_class for r in load_prompts(cfg, registry, None, cfg.data.train).rows] == ["arithmetic"] * 2
    with pytest.raises(ConfigError, match=r"data\.env_map\.gsm8k"):
        parse_config({**raw, "data": {"train": [str(f)], "env_map": {"gsm8k": 3}}}, registry)

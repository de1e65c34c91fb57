"""The builtin trackers: console table, metrics.jsonl, TensorBoard, and the curve plot."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from skyrl_core.tracking import (
    ConsoleConfig,
    ConsoleTracker,
    JsonlTracker,
    TensorBoardTracker,
    plot_curves,
    read_metrics,
    truncate_metrics,
)


def test_console_rows_line_up_with_the_header(tmp_path: Path, capsys) -> None:
    t = ConsoleTracker(ConsoleConfig(columns=["custom/x"]), tmp_path)
    t.log({"eval/all/score": 0.1}, 0)
    t.log({"reward/mean": 0.5, "policy/loss": 0.01, "custom/x": 3.0}, 1)
    t.log({"reward/mean": 0.6, "eval/all/score": 0.7}, 2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    header, rows = lines[0].split(), [line.split() for line in lines[1:]]
    assert header[0] == "step" and header[-1] == "x"
    assert all(len(row) == len(header) for row in rows), lines
    assert rows[1][header.index("reward")] == "+0.500" and rows[1][header.index("x")] == "3"
    assert rows[1][header.index("eval")] == "-"


def test_jsonl_later_lines_win_and_plot_is_written(tmp_path: Path) -> None:
    t = JsonlTracker(None, tmp_path)
    t.log({"reward/mean": 0.1, "eval/all/score": 0.0}, 0)
    t.log({"reward/mean": 0.2}, 1)
    t.log({"reward/mean": 0.3, "eval/all/score": float("nan")}, 1)  # a repeated step after a resume
    t.log({"reward/mean": 0.4, "eval/all/score": 0.5}, 2)
    t.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert rows[1]["reward/mean"] == 0.3 and rows[1]["eval/all/score"] is None  # NaN is written as null
    out = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    assert out is not None and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_curves(tmp_path / "missing.jsonl", tmp_path / "none.png") is None


def test_tensorboard_writes_event_files(tmp_path: Path) -> None:
    t = TensorBoardTracker(None, tmp_path)
    t.log({"reward/mean": 0.25, "bad": float("inf")}, 3)
    t.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["reward/mean"]
    assert acc.Scalars("reward/mean")[0].value == 0.25 and acc.Scalars("reward/mean")[0].step == 3


def test_console_len_column_shows_the_response_length(tmp_path: Path, capsys) -> None:
    ConsoleTracker(None, tmp_path).log({"reward/mean": 0.5, "rollout/response_length/mean": 12.25}, 1)
    header, row = (line.split() for line in capsys.readouterr().out.splitlines() if line.strip())
    assert row[header.index("len")] == "12.2"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_jsonl_of_a_resumed_run_drops_the_steps_it_redoes(tmp_path: Path) -> None:
    first = JsonlTracker(None, tmp_path, {"name": "t", "first_step": 0})
    for step in range(5):
        first.log({"reward/mean": float(step)}, step)
    first.close()
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "reward/me')  # the half-written line of a killed process
    resumed = JsonlTracker(None, tmp_path, {"name": "t", "first_step": 3})  # resumed from step 2's checkpoint
    assert [json.loads(line)["step"] for line in _lines(tmp_path / "metrics.jsonl")] == [0, 1, 2]
    for step in (3, 4):
        resumed.log({"reward/mean": 10.0 + step}, step)
    resumed.close()
    rows = [json.loads(line) for line in _lines(tmp_path / "metrics.jsonl")]
    assert [(r["step"], r["reward/mean"]) for r in rows] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]
    # starting over (first_step 0) supersedes everything; no first_step (an older caller) keeps the file
    JsonlTracker(None, tmp_path, {"name": "t"}).close()
    assert len(_lines(tmp_path / "metrics.jsonl")) == 5
    JsonlTracker(None, tmp_path, {"name": "t", "first_step": 0}).close()
    assert _lines(tmp_path / "metrics.jsonl") == []


def test_a_crash_while_truncating_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s}) + "\n" for s in range(4)))
    before = path.read_text()

    def crash(*args):
        raise OSError("disk full (test)")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        truncate_metrics(path, 2)
    assert path.read_text() == before  # the truncated copy was never swapped in
    monkeypatch.undo()
    assert truncate_metrics(path, 2) == 2
    assert [json.loads(line)["step"] for line in _lines(path)] == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]  # no temporary file left


def test_tensorboard_of_a_resumed_run_has_one_point_per_step(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TensorBoardTracker(None, tmp_path, {"name": "t", "first_step": 0})
    for step in range(1, 5):
        first.log({"reward/mean": float(step)}, step)
    first.close()
    time.sleep(1.1)  # event file names carry the time in seconds
    resumed = TensorBoardTracker(None, tmp_path, {"name": "t", "first_step": 3})
    for step in range(3, 6):
        resumed.log({"reward/mean": 10.0 + step}, step)
    resumed.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    points = [(e.step, e.value) for e in acc.Scalars("reward/mean")]
    assert points == [(1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0), (5, 15.0)]

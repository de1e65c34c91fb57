"""The builtin trackers: console table, metrics.jsonl, TensorBoard, and the curve plot."""

from __future__ import annotations

from pathlib import Path

from skyrl_core.tracking import (
    ConsoleConfig,
    ConsoleTracker,
    JsonlTracker,
    TensorBoardTracker,
    plot_curves,
    read_metrics,
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

"""End to end: `skyrl train` on a tiny model writes everything a run promises."""

from __future__ import annotations

import json
from pathlib import Path

import tomllib
import torch
from trainer_support import metrics, write_config
from transformers import AutoModelForCausalLM

from skyrl_core.cli import main


def test_two_step_run_writes_metrics_checkpoint_export_plot(tmp_path: Path, capsys) -> None:
    warm = (
        f'\n[warm_start]\ndata = ["{tmp_path.as_posix()}/data/sft.parquet"]\n'
        'generate = "arithmetic"\nsteps = 3\nbatch_size = 8\nlr = 1e-3\n'
    )
    cfg = write_config(tmp_path, steps=2, extra=warm)
    assert main(["train", str(cfg)]) == 0
    run = tmp_path / "run"
    rows = metrics(run)
    assert sorted(rows) == [0, 1, 2]
    # step 0: the start-up mismatch gate and the eval before training
    assert rows[0]["startup/logprob_diff_mean"] < 1e-3
    assert "eval/all/score" in rows[0] and "eval/arithmetic/pass@1" in rows[0]
    for step in (1, 2):
        row = rows[step]
        for key in (
            "reward/mean",
            "policy/pg_loss",
            "policy/grad_norm",
            "policy/entropy",
            "timing/generate",
            "timing/update",
            "timing/weight_sync",
            "rollout/response_length/mean",
        ):
            assert key in row, (step, key)
        # the backend sampled with the weights the trainer scored with (in-process sync)
        assert row["policy/rollout_logprob_diff_max"] < 1e-3
    assert "eval/all/score" in rows[2]  # the final step evaluates
    # warm start ran and the RL phase started from its export
    summary = json.loads((run / "warm_start" / "summary.json").read_text())
    assert summary["steps"] == 3
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["seed"] == 3
    assert any(p["distribution"] == "skyrl-core" for p in manifest["plugins"])
    assert tomllib.loads((run / "config.toml").read_text())["trainer"]["steps"] == 2
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("step-*"))
    assert ckpts == ["step-000001", "step-000002"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000002"
    state = json.loads((run / "checkpoints" / "step-000002" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["model_path"].endswith("warm_start/model")
    assert (run / "curves.png").stat().st_size > 0
    exported = AutoModelForCausalLM.from_pretrained(run / "export")
    assert sum(p.numel() for p in exported.parameters()) > 0
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_rerun_after_finish_resumes_and_does_nothing_more(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path, steps=1)
    assert main(["train", str(cfg)]) == 0
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert main(["train", str(cfg)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before


def test_export_command_writes_a_loadable_model(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, steps=1)
    assert main(["train", str(cfg), "checkpoint.export_at_end=false"]) == 0
    out = tmp_path / "exported"
    assert main(["export", str(cfg), "--out", str(out)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 2, 3]])
    assert model(ids).logits.shape[-1] == model.config.vocab_size


def test_eval_command_reports_scores(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path)
    assert main(["eval", str(cfg), "eval.output=" + json.dumps(str(tmp_path / "ev"))]) == 0
    out = capsys.readouterr().out
    assert "eval/all/score" in out

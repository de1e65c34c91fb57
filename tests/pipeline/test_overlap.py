"""Generation overlaps training in the off-policy modes, measured with the loop's own timings.

Generation takes a known minimum (the ``slow`` env sleeps in ``step``), and so does training
(the ``slow_ppo_clip`` loss sleeps). In ``sync`` mode the phases run one after another
inside a step, so a step lasts at least their sum. With overlap a step lasts less than the
sum of its phases, where ``timing/generate`` is the time its batch took to generate in the
background. Only sums within one run are compared; no absolute time is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_support import metrics, train_file, write_config

PHASES = ("timing/generate", "timing/old_logprobs", "timing/update", "timing/weight_sync")
SLOW_TRAINING = '\n[algorithm.policy_loss]\nname = "slow_ppo_clip"\nsleep_s = 0.15\n'


def _run(tmp_path: Path, model: Path, trainer: str, steps: int = 4) -> dict[int, dict[str, float]]:
    cfg = write_config(tmp_path, model, steps=steps, delay=0.15, trainer=trainer, extra=SLOW_TRAINING)
    train_file(cfg)
    return metrics(tmp_path / "run")


def _phases(m: dict[str, float]) -> float:
    return sum(m.get(key, 0.0) for key in PHASES)


def test_sync_mode_runs_its_phases_one_after_another(tmp_path, tiny_model_dir):
    rows = _run(tmp_path, tiny_model_dir, "")
    for step in range(1, 5):
        m = rows[step]
        assert m["timing/step"] >= _phases(m)  # the yardstick the off-policy tests compare against
        assert not any(k.startswith(("rollout/staleness", "timing/wait_rollouts")) for k in m)
        assert "policy/tis_weight_mean" not in m  # sync mode leaves TIS off by default


def test_one_step_off_step_time_is_below_the_sum_of_its_phases(tmp_path, tiny_model_dir):
    rows = _run(tmp_path, tiny_model_dir, 'mode = "one_step_off"')
    assert rows[1]["rollout/staleness/max"] == 0.0  # the first batch is generated, then trained
    overlapped = range(2, 5)
    for step in overlapped:
        m = rows[step]
        assert m["rollout/staleness/mean"] == m["rollout/staleness/max"] == 1.0
        # the trainer waited for less than the batch took to generate: the rest overlapped training
        assert m["timing/wait_rollouts"] < m["timing/generate"]
        assert "policy/tis_weight_mean" in m  # TIS is on by default in off-policy modes
    assert sum(rows[s]["timing/step"] for s in overlapped) < sum(_phases(rows[s]) for s in overlapped)


def test_async_step_time_is_below_the_sum_of_its_phases(tmp_path, tiny_model_dir):
    rows = _run(tmp_path, tiny_model_dir, 'mode = "async"\nmax_staleness = 1', steps=5)
    later = range(2, 6)
    for step in later:
        assert rows[step]["rollout/staleness/max"] <= 1.0
        assert rows[step]["rollout/stale_requeued"] == 0.0
    assert sum(rows[s]["timing/step"] for s in later) < sum(_phases(rows[s]) for s in later)


@pytest.mark.parametrize("mode", ["one_step_off", "async"])
def test_explicit_tis_off_is_kept_with_a_warning(tmp_path, tiny_model_dir, capsys, mode):
    cfg = write_config(tmp_path, tiny_model_dir, steps=2, delay=0.0, trainer=f'mode = "{mode}"',
                       extra='\n[algorithm.tis]\nmode = "off"\n')
    train_file(cfg)
    assert "[algorithm.tis] mode = 'off' was set explicitly" in capsys.readouterr().err
    assert "policy/tis_weight_mean" not in metrics(tmp_path / "run")[2]

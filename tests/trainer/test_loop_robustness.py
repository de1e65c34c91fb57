"""The loop survives bad steps and bad environments, and calls the pipeline hooks in order."""

from __future__ import annotations

from pathlib import Path

import loop_plugin
import pytest
from safetensors.torch import load_file
from trainer_support import metrics, write_config

from skyrl_core.config.loader import load_config
from skyrl_core.testing import fresh_registry
from skyrl_core.trainer import train


@pytest.fixture
def registry():
    loop_plugin.CALLS.clear()
    return fresh_registry(loop_plugin)


def test_nan_loss_step_is_skipped_and_reported(tmp_path: Path, registry) -> None:
    cfg_path = write_config(tmp_path, steps=2, extra='\n[algorithm.policy_loss]\nname = "nan_once"\n')
    cfg = load_config(cfg_path, ["trainer.prompts_per_minibatch=4"], registry)
    loop_plugin.NAN_CALLS["left"] = 1  # the first micro-batch of step 1
    train(cfg, registry)
    rows = metrics(tmp_path / "run")
    assert rows[1]["policy/skipped"] == 1.0
    assert rows[2]["policy/skipped"] == 0.0
    # the skipped step left the weights alone: step 1's checkpoint equals the start
    ckpts = tmp_path / "run" / "checkpoints"
    start = load_file(tmp_path / "model" / "model.safetensors")
    after_1 = load_file(next((ckpts / "step-000001").rglob("*.safetensors")))
    common = [k for k in start if k in after_1]
    assert common and all(start[k].float().equal(after_1[k].float()) for k in common)


def test_raising_environment_ends_only_its_trajectories(tmp_path: Path, registry) -> None:
    cfg_path = write_config(tmp_path, steps=2, extra="\n[environments.flaky]\n")
    cfg = load_config(cfg_path, [], registry)
    # route every row to the flaky env
    import attrs
    import pyarrow.parquet as pq

    from skyrl_core.startup import prepare_data

    prepare_data(cfg, registry)
    table = pq.read_table(tmp_path / "data" / "train.parquet").to_pylist()
    for row in table:
        row["env_class"] = "flaky"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), tmp_path / "data" / "train.parquet")
    cfg = attrs.evolve(cfg, eval=attrs.evolve(cfg.eval, before_train=False))
    train(cfg, registry)
    rows = metrics(tmp_path / "run")
    errors = [rows[s]["rollout/env_errors"] for s in (1, 2)]
    assert sum(errors) > 0  # some trajectories failed ...
    assert all(rows[s]["rollout/finish_reason/error"] < 1.0 for s in (1, 2))  # ... not all of them
    assert (tmp_path / "run" / "export").is_dir()  # and the run finished


def _route_rows(data: Path, env_class: str) -> None:
    """Point every row of the run's data files at ``env_class``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for name in ("train.parquet", "eval.parquet"):
        table = pq.read_table(data / name).to_pylist()
        for row in table:
            row["env_class"] = env_class
        pq.write_table(pa.Table.from_pylist(table), data / name)


def test_failed_trajectories_are_reported_on_the_console_and_the_run_finishes(tmp_path: Path, registry,
                                                                               capsys) -> None:
    from skyrl_core.startup import prepare_data

    cfg = load_config(write_config(tmp_path, steps=2, extra="\n[environments.half_failing]\n"), [], registry)
    prepare_data(cfg, registry)
    _route_rows(tmp_path / "data", "half_failing")  # every second episode raises, in training and eval
    train(cfg, registry)
    err = capsys.readouterr().err
    first = "first error: half_failing: step raised RuntimeError: this episode fails (test)"
    rows = metrics(tmp_path / "run")
    for step in (1, 2):  # 4 prompts x 4 samples per step, one warning line each
        line = f"warning: step {step}: 8 of 16 trajectories failed in their environment and scored 0 (half_failing: 8)"
        assert f"{line}; {first}\n" in err, err
        assert rows[step]["rollout/env_errors"] == 8
    for step in (0, 2):  # evaluation before training and at the end: 8 rows, 1 sample each
        assert f"warning: eval at step {step}: 4 of 8 trajectories failed in their environment" in err, err
        assert rows[step]["eval/all/env_errors"] == 4
        assert 0.0 <= rows[step]["eval/half_failing/correct"] <= 1.0  # the env's own metrics, in eval too
    assert sorted(rows) == [0, 1, 2] and (tmp_path / "run" / "export").is_dir()  # and the run finished


def test_pipeline_hooks_are_called_in_order(tmp_path: Path, registry) -> None:
    cfg = load_config(write_config(tmp_path, steps=2), [], registry)
    train(cfg, registry)
    names = [name for name, _ in loop_plugin.CALLS]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert names.count("collect_rollouts") == 2 and names.count("step_end") == 2
    # collection asks for the step's quota; shaping sees prompts x samples trajectories
    assert ("collect_rollouts", 4) in loop_plugin.CALLS and ("shape_rewards", 16) in loop_plugin.CALLS
    step_1 = names.index("step_end")
    assert names.index("collect_rollouts") < names.index("shape_rewards") < step_1
    rows = metrics(tmp_path / "run")
    assert rows[1]["test/shaped"] == 1.0 and rows[2]["test/step_end"] == 2.0


def test_a_backend_that_cannot_run_here_fails_before_the_warm_start(tmp_path: Path, registry) -> None:
    from skyrl_core.errors import MissingDependencyError

    warm = f'\n[warm_start]\ndata = ["{tmp_path.as_posix()}/data/sft.parquet"]\ngenerate = "arithmetic"\nsteps = 3\n'
    cfg = load_config(write_config(tmp_path, steps=1, extra=warm), ["backend.name=uninstalled"], registry)
    with pytest.raises(MissingDependencyError, match="pip install nothere"):
        train(cfg, registry)
    assert not (tmp_path / "run" / "warm_start").exists()  # no minutes spent before the error



def test_a_failing_shutdown_does_not_hide_the_error_that_ended_the_run(tmp_path: Path, registry, capsys) -> None:
    cfg = load_config(write_config(tmp_path, steps=1), ["backend.name=crashing"], registry)
    with pytest.raises(RuntimeError, match="the engine crashed"):
        train(cfg, registry)
    err = capsys.readouterr().err
    assert "warning: shutting the backend down failed: RuntimeError: shutdown broke as well" in err

"""The off-policy modes under ``[runtime] mode = "ray"`` on CPU: the native backend in a Ray
engine actor (split placement), the ``local`` strategy in the driver (weights through the
object store) or one ``fsdp2`` worker actor (weights broadcast over gloo), every weight sync
verified by checksum while background generation is paused."""

from __future__ import annotations

import pytest
from pipeline_support import metrics, train_file, write_config

RAY = '\n[runtime]\nmode = "ray"\ncolocate = false\ntrain_gpus = 1\ninference_gpus = 1\nverify_weights = true\n'


@pytest.fixture(autouse=True)
def _ray(ray_cluster):
    """Every test here runs on the session's Ray cluster (``skyrl_core.testing.pytest_plugin``)."""
    return ray_cluster


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trainer", "strategy"),
    [
        ('mode = "one_step_off"', "local"),
        ('mode = "async"\nin_flight = "abort"', "local"),
        ('mode = "async"\nin_flight = "abort"', "fsdp2"),
    ],
)
def test_off_policy_modes_with_engines_in_ray_actors(tmp_path, tiny_model_dir, trainer, strategy):
    extra = f'\n[strategy]\nname = "{strategy}"\n' + RAY
    cfg = write_config(tmp_path, tiny_model_dir, steps=4, delay=0.0, trainer=trainer, extra=extra)
    # long replies, so that syncs find requests running in the engine (cut and continued with abort)
    train_file(cfg, ["generator.max_new_tokens=120", "generator.max_total_tokens=200"])
    rows = metrics(tmp_path / "run")
    for step in (1, 2, 3, 4):
        assert rows[step]["rollout/staleness/max"] <= 1
        assert rows[step]["rollout/finish_reason/abort"] == 0.0
        assert rows[step]["policy/tis_weight_mean"] > 0
    assert rows[4]["rollout/staleness/max"] == 1.0
    if "abort" in trainer:
        assert rows[4]["rollout/continued_requests"] > 0

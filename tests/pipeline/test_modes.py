"""``[trainer] mode`` in the config and at start-up; abort mode, DAPO's hooks and a sync resume of
an async checkpoint, end to end."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
from pipeline_support import TRAINED_LOG, metrics, registry, train_file, trained, write_config

from skyrl_core import ComponentSpec, hookimpl
from skyrl_core.backends.native import NativeBackend
from skyrl_core.backends.native_config import NativeBackendConfig
from skyrl_core.checkpoint import read_state
from skyrl_core.config.loader import parse_config
from skyrl_core.errors import ConfigError, SkyrlError


def _cfg(**tables):
    raw = {"model": {"path": "m"}, **tables}
    return parse_config(raw, registry(), source="test")


def test_off_policy_modes_turn_tis_on_unless_the_config_sets_it():
    assert _cfg().algorithm.tis.mode == "off"
    assert _cfg(trainer={"mode": "one_step_off"}).algorithm.tis.mode == "token"
    assert _cfg(trainer={"mode": "async"}).algorithm.tis.mode == "token"
    set_explicitly = {"trainer": {"mode": "async"}, "algorithm": {"tis": {"mode": "sequence", "cap": 3.0}}}
    assert _cfg(**set_explicitly).algorithm.tis.mode == "sequence"
    assert _cfg(trainer={"mode": "async"}, algorithm={"tis": {"mode": "off"}}).algorithm.tis.mode == "off"


def test_colocated_engines_cannot_overlap_with_training():
    with pytest.raises(ConfigError, match=r"trainer.mode: 'one_step_off' overlaps.*colocate = false"):
        _cfg(trainer={"mode": "one_step_off"}, runtime={"mode": "ray"})
    cfg = _cfg(trainer={"mode": "async"}, runtime={"mode": "ray", "colocate": False})
    assert cfg.trainer.mode == "async"


def test_bad_values_are_reported_with_their_keys():
    with pytest.raises(ConfigError) as err:
        _cfg(trainer={"mode": "fast", "max_staleness": -1, "in_flight": "drop"})
    text = str(err.value)
    assert "trainer.mode" in text and "trainer.max_staleness" in text and "trainer.in_flight" in text


class NoAbortBackend(NativeBackend):
    """The native backend declaring it cannot abort (as a backend without abort_requests would)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.capabilities = attrs.evolve(self.capabilities, abort=False)


class NoAbortPlugin:
    @hookimpl
    def skyrl_register_backends(self):
        return [ComponentSpec("native_noabort", NoAbortBackend, "Native, without abort (test).", NativeBackendConfig)]


def test_abort_needs_a_backend_that_can_abort(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path, tiny_model_dir, steps=1, delay=0.0, trainer='mode = "async"\nin_flight = "abort"',
                       extra='\n[backend]\nname = "native_noabort"\n')
    with pytest.raises(SkyrlError, match=r"'native_noabort' backend cannot abort.*in_flight = 'finish'"):
        train_file(cfg, [], NoAbortPlugin())


def test_async_abort_mode_continues_cut_requests_and_keeps_the_bound(tmp_path, tiny_model_dir):
    # Long replies (a random tiny model rarely stops) keep requests running at every weight sync.
    cfg = write_config(tmp_path, tiny_model_dir, steps=4, delay=0.0, trainer='mode = "async"\nin_flight = "abort"')
    train_file(cfg, ["generator.max_new_tokens=120", "generator.max_total_tokens=200"])
    rows = metrics(tmp_path / "run")
    assert all(rows[s]["rollout/staleness/max"] <= 1 for s in range(1, 5))
    assert rows[4]["rollout/continued_requests"] > 0  # syncs did cut requests, which were continued
    assert all(rows[s]["rollout/finish_reason/abort"] == 0 for s in range(1, 5))  # none reached the trainer cut
    assert all(rows[s]["rollout/response_length/max"] <= 120 for s in range(1, 5))


@pytest.mark.parametrize("mode", ["one_step_off", "async"])
def test_dapo_dynamic_sampling_works_in_off_policy_modes(tmp_path, tiny_model_dir, mode):
    import skyrl_algo_dapo.plugin as dapo

    cfg = write_config(tmp_path, tiny_model_dir, steps=3, delay=0.0, trainer=f'mode = "{mode}"',
                       extra="\n[dapo]\nmax_sampling_rounds = 40\nprompts_per_round = 1\n"
                       "overlong_punishment = false\noverlong_filtering = false\n")
    train_file(cfg, [], dapo)
    rows = metrics(tmp_path / "run")
    for step in (1, 2, 3):
        m = rows[step]
        assert m["dapo/sampling_rounds"] >= 2  # sample(1) until two informative groups
        assert m["dapo/prompts_sampled"] == m["dapo/sampling_rounds"]
        assert m["rollout/staleness/max"] <= 1
        assert m["dapo/kept_reward_mean"] == 0.5  # only groups whose 2 samples got different rewards


def test_a_sync_run_resumed_from_an_async_checkpoint_trains_its_pending_prompts(tmp_path, tiny_model_dir,
                                                                                monkeypatch):
    first_log, second_log = tmp_path / "trained-1.jsonl", tmp_path / "trained-2.jsonl"
    monkeypatch.setenv(TRAINED_LOG, str(first_log))
    cfg = write_config(tmp_path, tiny_model_dir, steps=4, delay=0.05, ckpt_every=1,
                       trainer='mode = "async"\nmax_staleness = 2')
    train_file(cfg)
    first = tmp_path / "run" / "checkpoints" / "step-000001"
    pending = read_state(first)["loader"]["pending"]
    assert len(pending) >= 4  # groups for the next steps were buffered or generating
    monkeypatch.setenv(TRAINED_LOG, str(second_log))
    train_file(cfg, ["trainer.mode=sync", "trainer.steps=3", f"checkpoint.resume={str(first)!r}"])
    steps = {1: trained(first_log)[1], **trained(second_log)}
    assert steps[2] == pending[:2] and steps[3] == pending[2:4]  # pending first, in order
    assert len(set(steps[1] + steps[2] + steps[3])) == 6


class FailingBackend(NativeBackend):
    """Test double: the native backend, failing from its third generate call on (an engine crash)."""

    calls = 0

    async def generate(self, requests):
        FailingBackend.calls += 1
        if FailingBackend.calls > 2:
            raise RuntimeError("engine crashed (test)")
        return await super().generate(requests)


class FailingPlugin:
    @hookimpl
    def skyrl_register_backends(self):
        return [ComponentSpec("native_failing", FailingBackend, "Native, then crashes (test).", NativeBackendConfig)]


@pytest.mark.parametrize(("mode", "error"), [("one_step_off", RuntimeError), ("async", SkyrlError)])
def test_a_backend_failure_in_the_background_stops_the_run_with_its_error(tmp_path, tiny_model_dir, mode, error):
    FailingBackend.calls = 0
    cfg = write_config(tmp_path, tiny_model_dir, steps=4, delay=0.0, trainer=f'mode = "{mode}"',
                       extra='\n[backend]\nname = "native_failing"\n')
    with pytest.raises(error, match="engine crashed"):
        train_file(cfg, [], FailingPlugin())


class CountingBackend(NativeBackend):
    """The native backend, keeping every instance (its ``stats`` say where its batches ran)."""

    made: ClassVar[list[NativeBackend]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        CountingBackend.made.append(self)


class CountingPlugin:
    @hookimpl
    def skyrl_register_backends(self):
        return [ComponentSpec("native_counting", CountingBackend, "Native, instances kept (test).",
                              NativeBackendConfig)]


@pytest.mark.parametrize("mode", ["sync", "one_step_off"])
def test_only_sync_mode_decodes_on_the_trainers_thread(tmp_path, tiny_model_dir, mode):
    """On the CPU, ``sync`` training lends its waiting thread to the backend's batches (one OpenMP team,
    ``skyrl_core.threads``); ``one_step_off`` keeps generation in the backend's own thread, beside training."""
    CountingBackend.made.clear()
    cfg = write_config(tmp_path, tiny_model_dir, steps=2, delay=0.0, trainer=f'mode = "{mode}"',
                       extra='\n[backend]\nname = "native_counting"\n')
    train_file(cfg, [], CountingPlugin())
    (backend,) = CountingBackend.made
    stats = backend.stats
    assert stats["batches"] > 0
    if mode == "sync":
        assert stats["lent_batches"] == stats["batches"]
    else:
        assert stats["lent_batches"] < stats["batches"]  # the steps' batches run beside training

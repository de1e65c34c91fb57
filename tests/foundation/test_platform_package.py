"""A third-party platform package, written against ``skyrl_core.api`` only, as a user would ship it.

``tests/fixtures/packages/platform`` (distribution ``skyrl-test-platform``) provides a backend,
a strategy, an environment, an advantage estimator and a dataset preparer. Its strategy is a
``ShardedWeightSource`` and its backend an ``EngineGroup``, so weights go straight from one
to the other over a gloo broadcast group, with checksum verification: the direct transport is
picked from the protocols they implement, not from any builtin class.

The package is built as a wheel and installed with pip (into a folder on ``PYTHONPATH``, so
the test environment stays as it was); ``skyrl train`` runs 2 steps with it, and the installed
backend and strategy pass the conformance suites (``BackendConformance``,
``StrategyConformance``). Then broken variants of each component are built and installed the
same way: each gets one error line naming the distribution, the component and the member,
exit code 2, no traceback, and no model is built or loaded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from skyrl_core.api import (
    AbortsRequests,
    ChecksInstallation,
    EngineGroup,
    GenerateRequest,
    KnowsModelLength,
    ReportsWeights,
    SamplingParams,
)
from skyrl_core.testing.conformance import BackendConformance, generate
from skyrl_core.testing.strategy_conformance import StrategyConformance

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tests" / "fixtures" / "packages" / "platform"
DIST = "skyrl-test-platform 0.1.0"

pytestmark = pytest.mark.slow

RUN_TOML = """
[run]
name = "platform"
seed = 1
dir = "{root}/run"

[model]
path = "{root}/model"

[model.tiny]
hidden_size = 32
layers = 1
heads = 2
kv_heads = 1
intermediate_size = 64
vocab_size = 300

[data]
train = ["{root}/data/train.jsonl"]
eval = ["{root}/data/eval.jsonl"]
generate = "tp_data"
default_env_class = "tp_env"
max_prompt_tokens = 64

[generator]
max_new_tokens = 4
max_total_tokens = 80

[backend]
name = "tp_engine"

[strategy]
name = "tp_trainer"

[algorithm.advantage]
name = "tp_adv"

[environments.tp_env]
reward = 1.0

[trainer]
steps = 2
prompts_per_step = 2
samples_per_prompt = 2
lr = 1e-3

[runtime]
weight_sync = "broadcast"
verify_weights = true

[tracking]
trackers = ["jsonl"]
"""


def install(source: Path, work: Path) -> Path:
    """Build a wheel of ``source`` with pip and install it into ``work/site``; return that folder."""
    pip = [sys.executable, "-m", "pip"]
    build = work / "src"
    shutil.copytree(source, build)
    quiet = {"capture_output": True, "text": True, "check": True, "timeout": 300}
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work / "wheels"), str(build)],
                   **quiet)
    (wheel,) = (work / "wheels").glob("skyrl_test_platform-*.whl")
    subprocess.run([*pip, "install", "-q", "--no-deps", "--target", str(work / "site"), str(wheel)], **quiet)
    return work / "site"


def skyrl(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SKYRL_LOAD_PLUGINS")}
    env["PYTHONPATH"] = str(site)
    script = Path(sys.executable).parent / "skyrl"
    return subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def write_config(root: Path) -> Path:
    path = root / "run.toml"
    path.write_text(RUN_TOML.format(root=root.as_posix()))
    return path


def test_the_installed_package_trains_with_a_direct_weight_transfer(tmp_path: Path) -> None:
    site = install(PACKAGE, tmp_path / "build")
    listed = skyrl(site, tmp_path, "components", "--json")
    names = {kind: [c["name"] for c in comps if c["distribution"] == "skyrl-test-platform"]
             for kind, comps in json.loads(listed.stdout).items()}
    assert names["backend"] == ["tp_engine"] and names["strategy"] == ["tp_trainer"]
    assert names["environment"] == ["tp_env"] and names["advantage_estimator"] == ["tp_adv"]

    result = skyrl(site, tmp_path, "train", str(write_config(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {}
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows[row["step"]] = row
    assert sorted(rows) == [0, 1, 2]
    for step in (1, 2):
        assert rows[step]["weight_sync/direct"] == 1.0  # the strategy's rank sent straight to the engine
        assert rows[step]["weight_sync/verified"] == 1.0  # and the engine holds exactly what was sent
        assert rows[step]["weight_sync/buckets"] >= 1
    assert (tmp_path / "run" / "export" / "config.json").is_file()


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory):
    """The package's wheel installed into a folder put on ``sys.path`` for this module's in-process tests."""
    site = install(PACKAGE, tmp_path_factory.mktemp("platform-wheel"))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        import skyrl_test_platform

        assert Path(skyrl_test_platform.__file__).parent.parent == site, "imported from elsewhere, not the wheel"
        yield site
    for name in [m for m in sys.modules if m.startswith("skyrl_test_platform")]:
        del sys.modules[name]


@pytest.mark.usefixtures("installed")
class TestInstalledEngineConformance(BackendConformance):
    """The backend conformance suite on the installed ``tp_engine``."""

    logprob_atol = 1e-4

    def make_backend(self, model, seed):
        from skyrl_test_platform.config import EngineConfig
        from skyrl_test_platform.engine import Engine

        return Engine(EngineConfig(), model=model, seed=seed)


@pytest.mark.usefixtures("installed")
class TestInstalledTrainerConformance(StrategyConformance):
    """The strategy conformance suite on the installed ``tp_trainer`` (policy only: no reference, no critic)."""

    has_ref = False
    has_critic = False

    def make_strategy(self, model, trainer, **flags):
        from skyrl_test_platform.config import TrainerOptions
        from skyrl_test_platform.trainer import Trainer

        return Trainer(TrainerOptions(), model=model, trainer=trainer, **flags)


def test_the_installed_engine_declares_its_optional_capabilities(installed, tiny_model_cfg) -> None:
    from skyrl_test_platform.config import EngineConfig
    from skyrl_test_platform.engine import Engine


    assert isinstance(Engine, ChecksInstallation)
    assert Engine.check_installed(EngineConfig()).startswith("transformers ")
    engine = Engine(EngineConfig(max_model_len=40), model=tiny_model_cfg, seed=0)
    for protocol in (AbortsRequests, KnowsModelLength, EngineGroup, ReportsWeights):
        assert isinstance(engine, protocol), protocol.__name__
    assert engine.capabilities.abort and engine.max_model_len == 40

    # max_model_len: a prompt that leaves no room is refused; otherwise generation stops at the limit
    with pytest.raises(ValueError, match=r"tp_engine.generate: request 0: the prompt has 40 tokens.*\[backend\] "
                       "max_model_len"):
        generate(engine, [GenerateRequest([1] * 40, SamplingParams(max_new_tokens=4))])
    (result,) = generate(engine, [GenerateRequest([1] * 30, SamplingParams(max_new_tokens=50, seed=1))])
    assert len(result.completions[0].token_ids) == 10 and result.completions[0].finish_reason == "length"

    # abort_requests: a running request returns at once with finish reason "abort" and its tokens so far
    async def aborted() -> list:
        started = threading.Event()
        original = engine.model.forward

        def forward(*args, **kwargs):
            started.set()
            return original(*args, **kwargs)

        engine.model.forward = forward
        task = asyncio.ensure_future(engine.generate([GenerateRequest([1, 2, 3], SamplingParams(max_new_tokens=30))]))
        await asyncio.to_thread(started.wait, 60)
        engine.abort_requests()
        try:
            return await asyncio.wait_for(task, 60)
        finally:
            engine.model.forward = original

    (result,) = asyncio.run(aborted())
    (c,) = result.completions
    assert c.finish_reason == "abort" and len(c.token_ids) < 30 and len(c.logprobs) == len(c.token_ids)
    (after,) = generate(engine, [GenerateRequest([1, 2, 3], SamplingParams(max_new_tokens=5))])
    assert after.completions[0].finish_reason == "length"  # later requests run normally
    engine.shutdown()


def test_doctor_shows_the_engines_install_status(tmp_path: Path) -> None:
    site = install(PACKAGE, tmp_path / "build")
    result = skyrl(site, tmp_path, "doctor")
    lines = result.stdout.splitlines()
    (index,) = [i for i, line in enumerate(lines) if line.strip().startswith("tp_engine ")]
    assert "from skyrl-test-platform 0.1.0" in lines[index]
    assert lines[index + 1].strip().startswith("ready: transformers "), result.stdout
    assert lines[index + 1].strip().endswith(": generates on the CPU"), result.stdout


def _replaced(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced (which must occur: a variant that changes nothing tests nothing)."""
    assert old in text, f"the package no longer contains {old!r}"
    return text.replace(old, new)


def _drop_method(text: str, name: str) -> str:
    """``text`` without the method ``name`` (its ``def`` line and indented body)."""
    out = re.sub(rf"\n    def {name}\(self\)[^\n]*\n        \"\"\"[^\n]*\"\"\"\n", "\n", text)
    assert out != text, f"could not remove {name}"
    return out


BROKEN_ENV = '''"""A broken environment: it has no step()."""

from __future__ import annotations


class SayTheNumber:
    def __init__(self, config, extras):
        self.extras = extras

    def init(self, prompt):
        return prompt, {}

    def respond(self, action):
        return {"reward": 0.0, "done": True}
'''

VARIANTS = {
    "backend-without-reset_prefix_cache": (
        "engine.py",
        lambda text: _drop_method(text, "reset_prefix_cache"),
        "backend 'tp_engine' (skyrl-test-platform 0.1.0): missing method `def reset_prefix_cache()`",
    ),
    "backend-with-sync-generate": (
        "engine.py",
        lambda text: _replaced(
            _replaced(text, "    async def generate(", "    def generate("),
            "return await asyncio.to_thread(lambda: [self._one(r, s, started) for r, s in seeded])",
            "return [self._one(r, s, started) for r, s in seeded]",
        ),
        "backend 'tp_engine' (skyrl-test-platform 0.1.0): `generate` must be `async def generate(requests)` "
        "(the loop awaits it), but it is a plain function",
    ),
    "strategy-with-wrong-signature": (
        "trainer.py",
        lambda text: _replaced(text, "batch: TrainBatch,\n        loss_fn: LossFn,\n", "batch: TrainBatch,\n"),
        "strategy 'tp_trainer' (skyrl-test-platform 0.1.0): the method `train_step(self, batch, *, role, temperature, "
        "need_entropy)` cannot be called as `train_step(batch, loss_fn, role=..., temperature=..., need_entropy=...)`",
    ),
    "environment-without-step": (
        "env.py",
        lambda text: BROKEN_ENV,
        "environment 'tp_env' (skyrl-test-platform 0.1.0): missing method `def step(action)`",
    ),
    "estimator-with-wrong-arity": (
        "advantage.py",
        lambda text: _replaced(text, "def group_baseline(inp: AdvantageInput, config: Any)", "def group_baseline(inp)"),
        "advantage estimator 'tp_adv' (skyrl-test-platform 0.1.0): the function `group_baseline(inp)` cannot be "
        "called as `fn(inp, config)`",
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_broken_component_is_one_line_before_any_model_loads(tmp_path: Path, variant: str) -> None:
    file, mutate, expected = VARIANTS[variant]
    source = tmp_path / "platform"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    module = source / "skyrl_test_platform" / file
    module.write_text(mutate(module.read_text()))
    site = install(source, tmp_path / "build")

    result = skyrl(site, tmp_path, "train", str(write_config(tmp_path)))
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {expected}"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "model").exists()  # nothing was built or loaded
    assert not (tmp_path / "data").exists()
    # skyrl config validate reports the same line
    validate = skyrl(site, tmp_path, "config", "validate", "run.toml")
    assert validate.returncode == 2 and f"error: {expected}" in validate.stderr, validate.stderr


def test_an_exception_in_a_plugins_code_names_the_plugin(tmp_path: Path) -> None:
    source = tmp_path / "platform"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    module = source / "skyrl_test_platform" / "advantage.py"
    module.write_text(_replaced(module.read_text(),
        '    scores = (inp.token_rewards * inp.response_mask).sum(-1)\n',
        '    scores = (inp.token_rewards * inp.response_mask).sum(-1)\n'
        '    raise ValueError("the scores do not add up")\n',
    ))
    site = install(source, tmp_path / "build")
    result = skyrl(site, tmp_path, "train", str(write_config(tmp_path)))
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        "error: the advantage estimator 'tp_adv' of skyrl-test-platform 0.1.0 raised ValueError: the scores do not "
        "add up (at "
    )
    assert "skyrl_test_platform/advantage.py:" in errors[0] and "in group_baseline" in errors[0]
    traceback_file = Path(errors[0].rsplit("Full traceback: ", 1)[1])
    assert "Traceback" in traceback_file.read_text() and "Traceback" not in result.stderr

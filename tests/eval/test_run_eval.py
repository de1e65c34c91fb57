"""``run_eval`` on the tiny model with the real native backend, and pass@k on known answers."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest

from skyrl_core.config.loader import load_config
from skyrl_core.envs.arithmetic import ArithmeticEnv
from skyrl_core.envs.arithmetic_data import ArithmeticDataConfig, prepare_arithmetic
from skyrl_core.evaluation import pass_at_k, run_eval
from skyrl_core.protocols.backend import Completion, GenerateResult
from skyrl_core.testing import fresh_registry

CONFIG = """
[run]
name = "eval-test"
dir = "{run_dir}"

[model]
path = "{model}"
device = "cpu"

[data]
eval = ["{eval}"]

[generator]
max_new_tokens = 6

[eval]
samples_per_prompt = 4
temperature = 1.0
pass_k = [1, 2, 4]
max_rows = 5
"""


@pytest.fixture
def eval_config(tmp_path, tiny_model_dir):
    data = prepare_arithmetic(ArithmeticDataConfig(train_rows=10, eval_rows=20, sft_rows=0), tmp_path / "data")
    path = tmp_path / "eval.toml"
    path.write_text(CONFIG.format(run_dir=tmp_path / "run", model=tiny_model_dir, eval=data["eval"]))
    return path


def test_run_eval_with_native_backend_writes_samples_and_summary(eval_config, tmp_path):
    registry = fresh_registry()
    cfg = load_config(eval_config, [], registry)
    metrics = run_eval(cfg, registry, step=3, show_progress=False)

    out = tmp_path / "run" / "eval"
    assert sorted(p.name for p in out.iterdir()) == ["samples.jsonl", "summary.json"]
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 5 * 4
    assert Counter(r["uid"] for r in records) == {str(i): 4 for i in range(5)}
    for r in records:
        assert r["prompt"][-1]["content"].startswith("What is ")
        assert r["data_source"] == "arithmetic" and r["finish_reason"] in ("stop", "length")
        assert 1 <= r["response_tokens"] <= 6
        # The recorded reward is the arithmetic env's score of the recorded response.
        truth = eval(r["prompt"][-1]["content"][len("What is ") : -1])
        env = ArithmeticEnv(None, {"reward_spec": {"ground_truth": str(truth)}})
        assert r["reward"] == env.score(r["response"])

    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3 and summary["num_prompts"] == 5 and summary["samples_per_prompt"] == 4
    assert summary["metrics"] == metrics
    mean_reward = sum(r["reward"] for r in records) / len(records)
    assert metrics["eval/arithmetic/score"] == pytest.approx(mean_reward)
    assert metrics["eval/all/score"] == pytest.approx(mean_reward)
    lengths = sum(r["response_tokens"] for r in records) / len(records)
    assert metrics["eval/arithmetic/response_length"] == pytest.approx(lengths)
    reasons = Counter(r["finish_reason"] for r in records)
    assert metrics["eval/all/finish_reason/length"] == reasons["length"]
    assert metrics["eval/all/finish_reason/stop"] == reasons["stop"]
    assert {"eval/all/pass@1", "eval/all/pass@2", "eval/all/pass@4"} <= set(metrics)


class KnownAnswers:
    """Test double of a backend: for prompt i, the first ``correct[i]`` samples answer right.

    Lets the pass@k numbers of ``run_eval`` be checked exactly.
    """

    def __init__(self, tokenizer, correct: dict[str, int]) -> None:
        self.tokenizer, self.correct, self.seen = tokenizer, correct, Counter()
        self.shut = False

    async def generate(self, requests):
        out = []
        for req in requests:
            text = self.tokenizer.decode(list(req.prompt_ids))
            question = text.rsplit("What is ", 1)[1].split("?")[0]
            k = self.seen[question]
            self.seen[question] += 1
            value = eval(question) if k < self.correct[question] else -1
            ids = [*self.tokenizer.encode(f"\\boxed{{{value}}}", add_special_tokens=False), self.tokenizer.eos_token_id]
            out.append(GenerateResult([Completion(ids, [-0.5] * len(ids), "stop")]))
        await asyncio.sleep(0)
        return out

    def shutdown(self) -> None:
        self.shut = True


def _eval_known_answers(tmp_path, model_dir, questions: dict[str, tuple[str, int]]):
    """``run_eval`` of arithmetic rows ``{question: (data_source, correct samples of 4)}`` with the
    ``KnownAnswers`` backend; returns the metrics and the backend."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from skyrl_core.models.loading import load_tokenizer

    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {q}?"}],
            "env_class": "arithmetic",
            "reward_spec": {"method": "rule", "ground_truth": str(eval(q))},
            "data_source": source,
        }
        for q, (source, _) in questions.items()
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "eval.parquet")
    path = tmp_path / "eval.toml"
    path.write_text(CONFIG.format(run_dir=tmp_path / "run", model=model_dir, eval=tmp_path / "eval.parquet"))
    registry = fresh_registry()
    cfg = load_config(path, ["eval.max_rows=100"], registry)
    tokenizer = load_tokenizer(cfg.model)
    backend = KnownAnswers(tokenizer, {q: c for q, (_, c) in questions.items()})
    metrics = run_eval(cfg, registry, backend=backend, tokenizer=tokenizer, output_dir=tmp_path / "out",
                       show_progress=False)
    return metrics, backend


def test_pass_at_k_by_data_source_is_exact(tmp_path, tiny_model_dir):
    questions = {"1 + 1": ("easy", 4), "2 + 2": ("easy", 1), "30 * 3": ("hard", 0), "7 - 5": ("hard", 2)}
    metrics, backend = _eval_known_answers(tmp_path, tiny_model_dir, questions)
    assert not backend.shut  # a backend passed in belongs to the caller

    def expected(k: int, counts: list[int]) -> float:
        return sum(pass_at_k(4, c, k) for c in counts) / len(counts)

    assert metrics["eval/easy/score"] == pytest.approx((4 + 1) / 8)
    assert metrics["eval/hard/score"] == pytest.approx((0 + 2) / 8)
    assert metrics["eval/all/score"] == pytest.approx(7 / 16)
    assert metrics["eval/easy/pass@1"] == pytest.approx((1.0 + 0.25) / 2)
    assert metrics["eval/hard/pass@2"] == pytest.approx(expected(2, [0, 2]))
    assert metrics["eval/hard/pass@2"] == pytest.approx((0 + (1 - 1 / 6)) / 2)
    assert metrics["eval/all/pass@4"] == pytest.approx(3 / 4)
    assert metrics["eval/easy/num_prompts"] == 2 and metrics["eval/all/num_samples"] == 16
    assert Path(tmp_path / "out" / "summary.json").is_file()


def test_environment_metrics_are_reported_per_environment(tmp_path, tiny_model_dir):
    """The arithmetic env's own metrics (``correct``, ``formatted``, ``turns``) of the eval samples,
    as ``eval/<env>/<metric>``, next to the data-source metrics."""
    questions = {"1 + 1": ("easy", 4), "2 + 2": ("easy", 1), "30 * 3": ("hard", 0), "7 - 5": ("hard", 2)}
    metrics, _ = _eval_known_answers(tmp_path, tiny_model_dir, questions)
    assert metrics["eval/arithmetic/correct"] == pytest.approx(7 / 16)  # 4 + 1 + 0 + 2 right of 16
    assert metrics["eval/arithmetic/formatted"] == 1.0  # every reply is boxed
    assert metrics["eval/arithmetic/turns"] == 1.0
    assert "eval/arithmetic/mean" not in metrics  # the mean reward is the data sources' score
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"]["eval/arithmetic/correct"] == metrics["eval/arithmetic/correct"]


def test_an_environment_metric_never_replaces_a_data_source_metric():
    from skyrl_core.evaluation import environment_metrics
    from skyrl_core.rollout import RolloutBatch, Trajectory

    trajs = [Trajectory([1], [2], [1], [0.0], [1.0], 0, env_class=env) for env in ("math", "math/v2")]
    batch = RolloutBatch(trajs, {"reward/math/mean": 1.0, "reward/math/score": 0.5, "reward/math/solved": 0.25,
                                 "reward/math/v2/solved": 0.75, "rollout/env_errors": 0.0})
    taken = {"eval/math/score": 1.0}  # a data source named "math"
    assert environment_metrics(batch, taken) == {
        "eval/math/env/score": 0.5,  # moved aside, not over the data source's score
        "eval/math/solved": 0.25,
        "eval/math/v2/solved": 0.75,  # the longer environment name wins its keys
    }


def test_pass_at_k_estimator():
    assert pass_at_k(4, 0, 1) == 0.0 and pass_at_k(4, 4, 4) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)

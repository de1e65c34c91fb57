"""The builtin arithmetic environment and its dataset preparer."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from skyrl_core.data import load_prompt_rows
from skyrl_core.envs.arithmetic import ArithmeticEnv, ArithmeticEnvConfig, last_boxed, parse_integer
from skyrl_core.envs.arithmetic_data import ArithmeticDataConfig, answer, prepare_arithmetic, sample_problems
from skyrl_core.errors import DataError
from skyrl_core.specs import Kind
from skyrl_core.testing import check_plugin, fresh_registry


def env(truth="68", **config) -> ArithmeticEnv:
    return ArithmeticEnv(ArithmeticEnvConfig(**config), {"reward_spec": {"method": "rule", "ground_truth": truth}})


@pytest.mark.parametrize(
    ("reply", "reward"),
    [
        ("\\boxed{68}", 1.0),
        ("The answer is \\boxed{68}.", 1.0),
        ("\\boxed{ 68 }", 1.0),
        ("\\boxed{+68}", 1.0),
        ("\\boxed{68.0}", 1.0),
        ("\\boxed{67} no wait \\boxed{68}", 1.0),  # the last box counts
        ("\\boxed{68} no wait \\boxed{67}", 0.0),
        ("\\boxed{68} then \\boxed{68", 1.0),  # an unclosed last box: the last complete one
        ("68", 0.0),
        ("\\boxed{}", 0.0),
        ("\\boxed{6 8}", 1.0),
        ("\\boxed{68.5}", 0.0),
        ("\\boxed{sixty-eight}", 0.0),
        ("\\boxed{{68}}", 0.0),
        ("\\boxed{-68}", 0.0),
        ("\\boxed{٦٨}", 0.0),  # Arabic-Indic digits are not accepted as an answer
        ("\\boxed{" + "9" * 5000 + "}", 0.0),  # int() would refuse this many digits
        ("", 0.0),
        ("\\boxed", 0.0),
        ("\x00\ud800\\boxed{68", 0.0),
        ("}}}{{{\\boxed}{", 0.0),
    ],
)
def test_reward_battery(reply, reward):
    assert env().step(reply)["reward"] == reward


def test_format_reward_and_metrics():
    e = env(format_reward=0.1)
    out = e.step("\\boxed{12}")
    assert (out["reward"], out["done"], out["observations"]) == (0.1, True, [])
    assert e.get_metrics() == {"correct": 0.0, "formatted": 1.0, "turns": 1.0}
    assert env(format_reward=0.1).step("no box")["reward"] == 0.0
    assert env(format_reward=0.1).step("\\boxed{68}")["reward"] == 1.0
    assert ArithmeticEnv.aggregate_metrics([{"correct": 1.0}, {"correct": 0.0}]) == {"correct": 0.5}


def test_retries_when_turns_remain():
    e = ArithmeticEnv(None, {"reward_spec": {"ground_truth": 7}, "max_turns": 3})
    first = e.step("\\boxed{6}")
    assert not first["done"] and first["observations"] == [{"role": "user", "content": "Incorrect, try again."}]
    assert e.step("\\boxed{7}") == {"observations": [], "reward": 1.0, "done": True, "metadata": {"answer": "7"}}


def test_missing_ground_truth_is_reported():
    with pytest.raises(ValueError, match=r"reward_spec\.ground_truth must be an integer"):
        ArithmeticEnv(None, {"reward_spec": {"method": "rule"}})


def test_helpers():
    assert last_boxed("a \\boxed{x{y}z} b") == "x{y}z"
    assert last_boxed(None) is None  # type: ignore[arg-type]
    assert parse_integer("1,234") == 1234 and parse_integer("-7") == -7 and parse_integer("1e3") is None


def test_registered_through_the_plugin_hooks():
    registry = fresh_registry()
    comp = registry.get(Kind.ENVIRONMENT, "arithmetic")
    assert comp.load() is ArithmeticEnv and comp.spec.config_cls is ArithmeticEnvConfig
    assert registry.get(Kind.DATASET_PREPARER, "arithmetic").load() is prepare_arithmetic
    import skyrl_core.builtins as builtins

    assert check_plugin(builtins) == []


def test_preparer_writes_learnable_splits(tmp_path):
    cfg = ArithmeticDataConfig(train_rows=300, eval_rows=50, sft_rows=100, seed=1)
    paths = prepare_arithmetic(cfg, tmp_path)
    names = {k: p.name for k, p in paths.items()}
    assert names == {"train": "train.parquet", "eval": "eval.parquet", "sft": "sft.parquet"}
    registry = fresh_registry()
    train = load_prompt_rows([str(paths["train"])], registry=registry)
    evals = load_prompt_rows([str(paths["eval"])], registry=registry)
    assert len(train) == 300 and len(evals) == 50
    row = evals[0]
    assert row.prompt[0] == {"role": "system", "content": "Put your final answer in \\boxed{}."}
    assert row.prompt[1]["content"].startswith("What is ") and row.env_class == "arithmetic"
    question = lambda r: r.prompt[1]["content"]  # noqa: E731
    assert not {question(r) for r in evals.rows} & {question(r) for r in train.rows}
    assert len({question(r) for r in evals.rows}) == 50
    for r in train.rows[:50]:
        a, op, b = r.extras["extra_info"]["expression"].split()
        assert 10 <= int(a) <= 99 and 10 <= int(b) <= 99 and op in "+-"
        assert r.extras["reward_spec"]["ground_truth"] == str(answer(int(a), op, int(b)))
        assert int(r.extras["reward_spec"]["ground_truth"]) >= 0  # no negatives by default
        # The reference answer scores 1.0 in the env.
        e = ArithmeticEnv(None, r.extras)
        assert e.step(f"\\boxed{{{answer(int(a), op, int(b))}}}")["reward"] == 1.0
    sft = pq.read_table(paths["sft"]).to_pylist()
    assert len(sft) == 100
    assert sft[0]["response"] == f"\\boxed{{{eval(sft[0]['prompt'][1]['content'][8:-1])}}}"
    assert prepare_arithmetic(cfg, tmp_path / "again")["train"].read_bytes() == paths["train"].read_bytes()


def test_difficulty_options():
    problems = sample_problems(ArithmeticDataConfig(train_rows=200, eval_rows=20, sft_rows=0, digits=3, operations="*"))
    assert all(op == "*" and 100 <= a <= 999 and 100 <= b <= 999 for a, op, b in problems["train"])
    neg = sample_problems(ArithmeticDataConfig(train_rows=400, eval_rows=10, operations="-", allow_negative=True))
    assert any(a < b for a, _, b in neg["train"])
    big = sample_problems(ArithmeticDataConfig(train_rows=50, eval_rows=50, sft_rows=10, digits=5))
    assert len(set(big["eval"])) == 50 and not set(big["eval"]) & set(big["train"])
    with pytest.raises(DataError, match=r"only 155 distinct problems exist with operands 0\.\.9"):
        sample_problems(ArithmeticDataConfig(digits=1, eval_rows=100))
    small = sample_problems(ArithmeticDataConfig(max_operand=20, eval_rows=100, train_rows=1000, sft_rows=10))
    assert all(0 <= a <= 20 and 0 <= b <= 20 for a, _, b in small["train"] + small["eval"])
    assert not set(small["eval"]) & set(small["train"])  # 672 problems: eval stays disjoint


@pytest.mark.parametrize(
    ("reply", "reward"),
    [
        ("3 + 4 = 7.", 1.0),
        ("The answer is 7", 1.0),
        ("7", 1.0),
        ("7.0", 1.0),
        ("It is 7th.", 0.0),  # glued to letters: not a number
        ("7.5", 0.0),  # read, and wrong
        ("I think 7, no wait, 8", 0.0),  # the last number counts
        ("\\boxed{7} is what I would say, not 8", 1.0),  # a box wins over later numbers
        ("\\boxed{8} but really 7", 0.0),
        ("no digits here", 0.0),
    ],
)
def test_flexible_scoring_reads_the_last_number(reply, reward):
    env = ArithmeticEnv(ArithmeticEnvConfig(scoring="flexible"), {"reward_spec": {"ground_truth": "7"}})
    assert env.step(reply)["reward"] == reward
    strict = ArithmeticEnv(ArithmeticEnvConfig(), {"reward_spec": {"ground_truth": "7"}})
    assert strict.step(reply)["reward"] == (1.0 if reply.startswith("\\boxed{7}") else 0.0)


def test_flexible_scoring_reads_negative_answers_with_either_minus():
    for reply in ("2 - 5 = -3", "2 \u2212 5 = \u22123"):
        env = ArithmeticEnv(ArithmeticEnvConfig(scoring="flexible"), {"reward_spec": {"ground_truth": "-3"}})
        assert env.step(reply)["reward"] == 1.0, reply


def test_instruction_is_appended_to_every_question(tmp_path):
    cfg = ArithmeticDataConfig(train_rows=5, eval_rows=5, sft_rows=2, digits=1, system_prompt="",
                               instruction="Answer with the number.")
    files = prepare_arithmetic(cfg, tmp_path)
    for split in ("train", "eval", "sft"):
        for prompt in pq.read_table(files[split]).column("prompt").to_pylist():
            assert len(prompt) == 1 and prompt[0]["role"] == "user"  # no system message
            assert prompt[0]["content"].startswith("What is ")
            assert prompt[0]["content"].endswith("? Answer with the number.")

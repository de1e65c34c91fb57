"""skyrl's ``scoring = "skyrl"`` against the real skyrl-gym, reply by reply.

``scoring_corpus.json`` holds GSM8K replies, multi-turn GSM8K episodes and text-to-SQL episodes
(run on a real SQLite database), each with the reward skyrl-gym gives (``skyrl``) and the one
skyrl's default scoring gives (``ours``). Every item runs through skyrl-gym's own environment
and through skyrl-env-gsm8k's / skyrl-env-sql's with ``scoring = "skyrl"``: rewards, ``done``
and (GSM8K) observations must be identical, and both must be the corpus's ``skyrl`` value. With
the default scoring they must be the ``ours`` values, so the corpus really exercises every
difference the option removes.

Runs in the skyrl-gym stage (scripts/ci.sh installs skyrl-gym 0.4.0, skyrl-env-gsm8k and
skyrl-env-sql); elsewhere it is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from skyrlgym_support import TESTS_DIR, needs_skyrl_gym

from skyrl_core.api import Kind, StepOutput, build_registry, parse_config

HAVE_OURS = all(importlib.util.find_spec(m) is not None for m in ("skyrl_env_gsm8k", "skyrl_env_sql"))
pytestmark = [
    needs_skyrl_gym,
    pytest.mark.skipif(not HAVE_OURS, reason="needs skyrl-env-gsm8k and skyrl-env-sql (scripts/ci.sh installs them)"),
]

CORPUS = json.loads((TESTS_DIR / "scoring_corpus.json").read_text())
GSM8K, MULTI, SQL = CORPUS["gsm8k"], CORPUS["gsm8k_multi_turn"], CORPUS["text2sql"]


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [f"{i}-{item['note'][:40]}" for i, item in enumerate(items)]


def _gsm8k_extras(truth: str, max_turns: int = 1) -> dict[str, Any]:
    return {"reward_spec": {"method": "rule", "ground_truth": truth}, "max_turns": max_turns,
            "extra_info": {"split": "test", "index": 0}}


def _run(env: Any, replies: list[str]) -> list[tuple[float, bool, list[dict[str, Any]]]]:
    """Step ``env`` with ``replies`` until it is done: (reward, done, observations) per turn."""
    out = []
    for reply in replies:
        step = env.step(reply)  # skyrl's StepOutput, or skyrl-gym's dict
        if isinstance(step, StepOutput):
            step = {"reward": step.reward, "done": step.done, "observations": step.observations}
        result = (float(step["reward"]), bool(step["done"]), list(step["observations"]))
        out.append(result)
        if result[1]:
            break
    env.close()
    return out


def test_the_corpus_has_what_issue_23_asks_for():
    assert len(GSM8K) >= 48
    notes = " | ".join(item["note"] for item in GSM8K)
    for needed in ("first vs last", "dollar", "full stop", "bold", "comma", "negative", "no marker"):
        assert needed in notes
    assert any(sum(m["skyrl"]) == pytest.approx(1.1) and sum(m["ours"]) == 0.25 for m in MULTI)
    notes = " | ".join(e["note"] for e in SQL["episodes"])
    for needed in ("no <think>", "duplicate", "order", "invalid SQL", "hostile"):
        assert needed in notes


# -- gsm8k --------------------------------------------------------------------------------------


@pytest.mark.parametrize("item", GSM8K, ids=_ids(GSM8K))
def test_gsm8k_replies_score_as_in_skyrl_gym(item):
    import skyrl_gym
    from skyrl_env_gsm8k.config import Gsm8kEnvConfig
    from skyrl_env_gsm8k.env import Gsm8kEnv

    extras = _gsm8k_extras(item["truth"])
    theirs = _run(skyrl_gym.make("gsm8k", env_config={}, extras=extras), [item["reply"]])
    skyrl = _run(Gsm8kEnv(Gsm8kEnvConfig(scoring="skyrl"), extras), [item["reply"]])
    ours = _run(Gsm8kEnv(Gsm8kEnvConfig(), extras), [item["reply"]])
    assert skyrl == theirs == [(item["skyrl"], True, [])]
    assert ours == [(item["ours"], True, [])]


def test_gsm8k_default_scoring_differs_where_the_issue_says():
    differ = [item for item in GSM8K if item["skyrl"] != item["ours"]]
    assert len(differ) >= 24
    notes = " | ".join(item["note"] for item in differ)
    known_differences = ("SkyRL reads the first", "we read the last", "a dollar sign", "final full stop", "bold after")
    for known in known_differences:
        assert known in notes


# -- gsm8k_multi_turn ---------------------------------------------------------------------------


@pytest.mark.parametrize("episode", MULTI, ids=_ids(MULTI))
def test_gsm8k_multi_turn_episodes_score_as_in_skyrl_gym(episode):
    import skyrl_gym
    from skyrl_env_gsm8k.config import Gsm8kMultiTurnConfig
    from skyrl_env_gsm8k.env import Gsm8kMultiTurnEnv

    extras = _gsm8k_extras(episode["truth"], episode["max_turns"])
    theirs = _run(skyrl_gym.make("gsm8k_multi_turn", env_config={}, extras=extras), episode["replies"])
    skyrl = _run(Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(scoring="skyrl"), extras), episode["replies"])
    ours = _run(Gsm8kMultiTurnEnv(Gsm8kMultiTurnConfig(), extras), episode["replies"])
    assert skyrl == theirs  # per-turn rewards, done and the follow-up messages
    assert [r for r, _, _ in theirs] == pytest.approx(episode["skyrl"])
    assert [r for r, _, _ in ours] == pytest.approx(episode["ours"])
    assert theirs[-1][1] and ours[-1][1]


# -- text2sql -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sql_root(tmp_path_factory) -> Path:
    """``<root>/spider/database/corpus/corpus.sqlite``: where both environments look for db_id
    ``corpus`` of the family ``spider``."""
    root = tmp_path_factory.mktemp("sql-corpus")
    path = root / "spider" / "database" / "corpus" / "corpus.sqlite"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as con:
        for statement in SQL["database"]:
            con.execute(statement)
    con.close()
    return root


def _sql_extras(episode: dict[str, Any]) -> dict[str, Any]:
    return {"db_id": "corpus", "data": "spider", "max_turns": episode["max_turns"],
            "reward_spec": {"method": "rule", "ground_truth": episode["gold"]}}


def _digest(root: Path) -> str:
    return hashlib.sha256((root / "spider" / "database" / "corpus" / "corpus.sqlite").read_bytes()).hexdigest()


@pytest.mark.parametrize("episode", SQL["episodes"], ids=_ids(SQL["episodes"]))
def test_text2sql_episodes_score_as_in_skyrl_gym(episode, sql_root):
    import skyrl_gym
    from skyrl_env_sql.config import Text2SQLConfig
    from skyrl_env_sql.env import Text2SQLEnv
    from skyrl_gym.envs.sql.env import Text2SQLEnvConfig

    extras = _sql_extras(episode)
    before = _digest(sql_root)
    skyrl = _run(Text2SQLEnv(Text2SQLConfig(db_root=str(sql_root), scoring="skyrl"), extras), episode["replies"])
    ours = _run(Text2SQLEnv(Text2SQLConfig(db_root=str(sql_root)), extras), episode["replies"])
    assert _digest(sql_root) == before, "skyrl's text2sql changed the database"
    theirs = _run(skyrl_gym.make("text2sql", env_config=Text2SQLEnvConfig(db_path=str(sql_root)), extras=extras),
                  episode["replies"])
    assert [(r, d) for r, d, _ in skyrl] == [(r, d) for r, d, _ in theirs]
    assert theirs[-1][:2] == (episode["skyrl"], True) and all(r == 0 for r, _, _ in theirs[:-1])
    assert ours[-1][:2] == (episode["ours"], True)
    for (_, _, mine), (_, _, their) in zip(skyrl, theirs, strict=True):
        # the same wrapper and reminder; the result table inside is skyrl's own (SkyRL prints a pandas frame)
        assert len(mine) == len(their) <= 1
        for m, t in zip(mine, their, strict=True):
            assert m["role"] == t["role"] == "user"
            assert m["content"][:15] == t["content"][:15] == "\n\n<observation>"
            assert m["content"][-70:] == t["content"][-70:]
            if "Your previous action is invalid" in t["content"]:
                assert m["content"] == t["content"]


def test_text2sql_default_scoring_differs_where_the_issue_says():
    differ = [e["note"] for e in SQL["episodes"] if e["skyrl"] != e["ours"]]
    notes = " | ".join(differ)
    for known in ("no <think>", "SkyRL compares sets", "wrong order", "hostile: DELETE"):
        assert known in notes


def test_a_file_attach_is_the_one_statement_not_reproduced(sql_root, tmp_path):
    """SkyRL runs ``ATTACH DATABASE 'file'`` (creating the file) and scores its empty result; skyrl
    refuses to touch the file system, so that solution scores 0 instead of SkyRL's 1."""
    import skyrl_gym
    from skyrl_env_sql.config import Text2SQLConfig
    from skyrl_env_sql.env import Text2SQLEnv
    from skyrl_gym.envs.sql.env import Text2SQLEnvConfig

    target = tmp_path / "attached.sqlite"
    episode = {"gold": "SELECT name FROM people WHERE age > 100", "max_turns": 2,
               "replies": [f"<think>x</think><solution>ATTACH DATABASE '{target}' AS a</solution>"]}
    ours = _run(Text2SQLEnv(Text2SQLConfig(db_root=str(sql_root), scoring="skyrl"), _sql_extras(episode)),
                episode["replies"])
    assert ours == [(0.0, True, [])] and not target.exists()
    theirs = _run(skyrl_gym.make("text2sql", env_config=Text2SQLEnvConfig(db_path=str(sql_root)),
                                 extras=_sql_extras(episode)), episode["replies"])
    assert theirs == [(1.0, True, [])]


# -- the option, as a user writes it ------------------------------------------------------------


def test_the_option_is_read_from_toml_for_all_three_environments():
    registry = build_registry(only=["skyrl-env-gsm8k", "skyrl-env-sql"])
    assert {"gsm8k", "gsm8k_multi_turn", "text2sql"} <= set(registry.names(Kind.ENVIRONMENT))
    raw = {"model": {"path": "m"}, "data": {"train": ["t.jsonl"]},
           "environments": {"gsm8k": {"scoring": "skyrl"}, "gsm8k_multi_turn": {"scoring": "skyrl"},
                            "text2sql": {"scoring": "skyrl", "db_root": "db"}}}
    cfg = parse_config(raw, registry)
    assert {name: cfg.environments[name].scoring for name in ("gsm8k", "gsm8k_multi_turn", "text2sql")} == {
        "gsm8k": "skyrl", "gsm8k_multi_turn": "skyrl", "text2sql": "skyrl"}

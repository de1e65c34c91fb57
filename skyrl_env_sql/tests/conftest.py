"""Fixtures of the skyrl-env-sql tests: real SQLite files built in a temporary folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from skyrl_env_sql.config import Text2SQLConfig
from skyrl_env_sql.env import Text2SQLEnv
from sql_fixtures import DB_ID, FAMILY, build_zoo


@pytest.fixture(scope="session")
def zoo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo database, built once per session (SQLite's fsync on commit is slow on some disks)."""
    return build_zoo(tmp_path_factory.mktemp("zoo-template") / f"{DB_ID}.sqlite")


@pytest.fixture
def db_root(tmp_path: Path, zoo_template: Path) -> Path:
    """A db_root holding a fresh copy of ``spider/zoo/zoo.sqlite`` (the plain <family>/<db_id> layout)."""
    root = tmp_path / "dbs"
    target = root / FAMILY / DB_ID / f"{DB_ID}.sqlite"
    target.parent.mkdir(parents=True)
    shutil.copyfile(zoo_template, target)
    return root


@pytest.fixture
def zoo_path(db_root: Path) -> Path:
    """The zoo database file."""
    return db_root / FAMILY / DB_ID / f"{DB_ID}.sqlite"


@pytest.fixture
def make_env(db_root: Path):
    """``make_env(gold_sql, max_turns=3, **config)`` -> a ``Text2SQLEnv`` on the zoo database."""

    def make(gold: str, max_turns: int = 3, **options) -> Text2SQLEnv:
        cfg = Text2SQLConfig(db_root=str(db_root), **options)
        extras = {
            "db_id": DB_ID,
            "data": FAMILY,
            "reward_spec": {"method": "rule", "ground_truth": gold},
            "max_turns": max_turns,
        }
        return Text2SQLEnv(cfg, extras)

    return make

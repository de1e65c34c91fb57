"""Fixtures of the skyrl-env-sql tests: real SQLite files built in a temporary folder."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from skyrl_env_sql.config import Text2SQLConfig
from skyrl_env_sql.env import Text2SQLEnv

DB_ID = "zoo"
FAMILY = "spider"

PEOPLE = [
    (1, "Ann", "Oslo", 3.5),
    (2, "Bob", "Lima", 2.25),
    (3, "Cid", "Oslo", None),
    (4, "Dee", "Pune", 4.0),
    (5, "Eve", "Lima", 2.25),
]
PETS = [(1, 1, "cat"), (2, 1, "dog"), (3, 2, "cat"), (4, 4, "fish"), (5, 5, "cat")]


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_zoo(path: Path) -> Path:
    """A small hand-made database: people(id, name, city, score) and pets(id, owner_id, kind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, city TEXT, score REAL);
        CREATE TABLE pets (id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES people(id), kind TEXT);
        CREATE INDEX pets_owner ON pets(owner_id);
        CREATE VIEW cat_owners AS SELECT DISTINCT owner_id FROM pets WHERE kind = 'cat';
        """
    )
    conn.executemany("INSERT INTO people VALUES (?, ?, ?, ?)", PEOPLE)
    conn.executemany("INSERT INTO pets VALUES (?, ?, ?)", PETS)
    conn.commit()
    conn.close()
    return path


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

"""Test data of the skyrl-env-sql tests: the hand-made "zoo" database and a file hash.

A module with its own name (not ``conftest``) so that test files can import it while other
test folders with their own ``conftest.py`` are collected in the same session.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

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

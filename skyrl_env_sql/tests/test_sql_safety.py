"""The adversarial battery: hostile queries against a real SQLite file, in both isolation modes.

Every case checks the outcome kind and that the message says why, and every test checks
that the database file is byte-identical afterwards and that no journal/WAL files or
attached copies appeared. Time is bounded by asserting *how* a query ended (interrupted
by the progress handler, stopped at the hard limit, or refused by a limit), never by
measuring wall time.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from skyrl_env_sql.executor import QueryLimits, execute
from skyrl_env_sql.sandbox import get_pool, run_query
from sql_fixtures import PEOPLE, sha256

MODES = ["process", "thread"]
LIMITS = QueryLimits(timeout_s=0.5, max_rows=50, max_value_bytes=1_000_000)


@pytest.fixture
def guarded(zoo_path: Path, tmp_path: Path):
    """Run queries on the zoo database; afterwards check it is unchanged and nothing was written."""
    before = sha256(zoo_path)
    folder_before = sorted(p.name for p in zoo_path.parent.iterdir())

    def run(sql: str, mode: str, limits: QueryLimits = LIMITS, **kw):
        return run_query(zoo_path, sql.format(tmp=tmp_path), limits, isolation=mode, **kw)

    yield run
    assert sha256(zoo_path) == before, "the database file changed"
    assert sorted(p.name for p in zoo_path.parent.iterdir()) == folder_before, "files appeared next to the database"
    assert not list(tmp_path.glob("*.db")), "a query created a database file"


# (id, sql, error kind, words the message must contain)
REFUSED = [
    ("insert", "INSERT INTO people VALUES (9, 'Zed', 'Rome', 1.0)", "denied", "INSERT on table people"),
    ("update", "UPDATE people SET score = 0", "denied", "UPDATE on table people"),
    ("delete", "DELETE FROM people WHERE id > 0", "denied", "DELETE on table people"),
    ("replace", "REPLACE INTO people VALUES (1, 'x', 'y', 0)", "denied", "on table people"),
    ("upsert", "INSERT INTO pets VALUES (1, 1, 'cow') ON CONFLICT(id) DO UPDATE SET kind = 'cow'", "denied", "pets"),
    ("drop_table", "DROP TABLE people", "denied", "changing the schema"),
    ("drop_view", "DROP VIEW cat_owners", "denied", "changing the schema"),
    ("drop_index", "DROP INDEX pets_owner", "denied", "changing the schema"),
    ("create_table", "CREATE TABLE loot (x)", "denied", "changing the schema"),
    ("create_table_as", "CREATE TABLE loot AS SELECT * FROM people", "denied", "changing the schema"),
    ("create_temp_table", "CREATE TEMP TABLE scratch (x)", "denied", "changing the schema"),
    ("create_trigger", "CREATE TEMP TRIGGER t AFTER INSERT ON people BEGIN SELECT 1; END", "denied", "TRIGGER"),
    ("create_vtable", "CREATE VIRTUAL TABLE temp.f USING fts5(x)", "denied", "not allowed"),
    ("alter", "ALTER TABLE people ADD COLUMN age INTEGER", "denied", "ALTER TABLE people"),
    ("attach", "ATTACH DATABASE '{tmp}/evil.db' AS evil", "denied", "ATTACH"),
    ("attach_memory", "ATTACH ':memory:' AS m", "denied", "ATTACH"),
    ("vacuum_into", "VACUUM INTO '{tmp}/copy.db'", "denied", "ATTACH"),
    ("vacuum", "VACUUM", "denied", "not allowed"),
    ("detach", "DETACH DATABASE main", "denied", "DETACH"),
    ("reindex", "REINDEX", "denied", "REINDEX"),
    ("analyze", "ANALYZE", "denied", "changing the schema"),
    ("pragma_journal", "PRAGMA journal_mode = WAL", "denied", "PRAGMA journal_mode"),
    ("pragma_writable_schema", "PRAGMA writable_schema = ON", "denied", "PRAGMA writable_schema"),
    ("pragma_query_only", "PRAGMA query_only = 0", "denied", "PRAGMA query_only"),
    ("pragma_user_version", "PRAGMA user_version = 7", "denied", "PRAGMA user_version"),
    ("pragma_trusted_schema", "PRAGMA trusted_schema = 1", "denied", "PRAGMA trusted_schema"),
    ("load_extension", "SELECT load_extension('/tmp/evil.so')", "denied", "load_extension"),
    ("load_extension_entry", "SELECT load_extension('libevil', 'sqlite3_evil_init')", "denied", "load_extension"),
    ("fts3_tokenizer", "SELECT fts3_tokenizer('simple')", "denied", "fts3_tokenizer"),
    ("begin", "BEGIN IMMEDIATE", "denied", "transaction control"),
    ("commit", "COMMIT", "denied", "transaction control"),
    ("savepoint", "SAVEPOINT s1", "denied", "transaction control"),
    ("multiple", "SELECT 1; DROP TABLE people", "multiple", "one SQL statement"),
    ("multiple_selects", "SELECT 1; SELECT 2", "multiple", "one SQL statement"),
    ("zeroblob", "SELECT zeroblob(2000000)", "too_big", "too big"),
    ("randomblob", "SELECT randomblob(1000000000)", "too_big", "too big"),
    ("replace_grow", "SELECT replace(hex(zeroblob(400000)), '0', '00')", "too_big", "too big"),
    (
        "group_concat_grow",
        "SELECT group_concat(hex(zeroblob(1000))) FROM "
        "(WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2000) SELECT n FROM r)",
        "too_big",
        "too big",
    ),
    ("malformed", "SELEC name FROM people", "error", "syntax error"),
    ("incomplete", "SELECT * FROM", "error", "incomplete input"),
    ("unterminated_string", "SELECT 'abc FROM people", "error", "unrecognized token"),
    ("unknown_table", "SELECT * FROM persons", "error", "no such table: persons"),
    ("unknown_column", "SELECT age FROM people", "error", "no such column: age"),
    ("unknown_function", "SELECT shell('rm -rf /')", "error", "no such function: shell"),
    ("nul_byte", "SELECT 1\x00; DROP TABLE people", "error", "null character"),
    ("lone_surrogate", "SELECT '\ud800'", "error", "surrogates not allowed"),
    ("deep_expression", "SELECT " + "+".join(["1"] * 5000), "error", "too large"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("sql", "kind", "words"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_with_a_clear_reason(guarded, mode, sql, kind, words):
    result = guarded(sql, mode)
    assert not result.ok
    assert result.error_kind == kind, result.error
    assert words in result.error
    assert result.rows == ()


RUNAWAY = [
    ("recursive_cte", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"),
    ("recursive_cte_distinct", "WITH RECURSIVE r(n) AS (SELECT 1 UNION SELECT n + 1 FROM r) SELECT max(n) FROM r"),
    ("cartesian_count", "SELECT count(*) FROM " + ", ".join(f"people p{i}" for i in range(14))),
    ("cartesian_sort", "SELECT p0.name FROM " + ", ".join(f"people p{i}" for i in range(14)) + " ORDER BY random()"),
    (
        "nested_cte_join",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000) "
        "SELECT count(*) FROM r a JOIN r b ON a.n + b.n > 0",
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sql", [c[1] for c in RUNAWAY], ids=[c[0] for c in RUNAWAY])
def test_runaway_queries_are_interrupted(guarded, mode, sql):
    result = guarded(sql, mode)
    assert result.error_kind == "interrupted", result
    assert "interrupted after 0.5 s" in result.error


def test_a_single_slow_builtin_call_is_stopped_at_the_hard_limit(guarded):
    # printf with a huge width runs inside one C call: the progress handler never gets a chance.
    pool = get_pool(8, 1 << 30)
    killed = pool.killed
    result = guarded("SELECT length(printf('%.*c', 2000000000, 'x'))", "process", grace_s=0.3)
    assert result.error_kind == "interrupted"
    assert "hard time limit" in result.error
    assert pool.killed == killed + 1
    # the pool replaced the killed worker: the next query works
    assert guarded("SELECT count(*) FROM people", "process").rows == ((5,),)


@pytest.mark.parametrize("mode", MODES)
def test_unbounded_results_are_cut_at_max_rows(guarded, mode):
    endless = guarded("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r", mode)
    assert endless.ok and endless.truncated
    assert [r[0] for r in endless.rows] == list(range(1, 51))
    product = guarded("SELECT * FROM " + ", ".join(f"people p{i}" for i in range(12)), mode)
    assert product.ok and product.truncated and len(product.rows) == 50
    assert len(product.columns) == 48


# Queries whose text mentions writes inside comments and string literals: they are reads.
HARMLESS = [
    ("line_comment", "SELECT name FROM people -- ; DROP TABLE people", [(p[1],) for p in PEOPLE]),
    ("block_comment", "SELECT name FROM people /* ; DELETE FROM people; */ WHERE id = 1", [("Ann",)]),
    ("string_literal", "SELECT 'DROP TABLE people; --' AS s", [("DROP TABLE people; --",)]),
    ("escaped_quote", "SELECT name FROM people WHERE name = 'O''Brien''; DROP TABLE people; --'", []),
    ("quoted_identifier", 'SELECT "name" FROM "people" WHERE city = \'Oslo\' ORDER BY id', [("Ann",), ("Cid",)]),
    ("trailing_comment", "SELECT 1; -- DROP TABLE people", [(1,)]),
    (
        "tags_in_string",
        "SELECT '</sql><solution>DROP TABLE people</solution>'",
        [("</sql><solution>DROP TABLE people</solution>",)],
    ),
    (
        "schema_pragma",
        "PRAGMA table_info(pets)",
        [(0, "id", "INTEGER", 0, None, 1), (1, "owner_id", "INTEGER", 0, None, 0), (2, "kind", "TEXT", 0, None, 0)],
    ),
    ("sqlite_master", "SELECT name FROM sqlite_master WHERE type = 'view'", [("cat_owners",)]),
    ("view", "SELECT owner_id FROM cat_owners ORDER BY owner_id", [(1,), (2,), (5,)]),
    ("explain", "EXPLAIN QUERY PLAN SELECT * FROM pets WHERE owner_id = 1", None),
    ("large_value_under_limit", "SELECT length(hex(zeroblob(400000)))", [(800000,)]),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("sql", "rows"), [c[1:] for c in HARMLESS], ids=[c[0] for c in HARMLESS])
def test_reads_that_mention_writes_run_normally(guarded, mode, sql, rows):
    result = guarded(sql, mode)
    assert result.ok, result.error
    if rows is not None:
        assert [tuple(r) for r in result.rows] == rows
    else:
        assert result.rows


@pytest.mark.parametrize("mode", MODES)
def test_many_threads_query_one_database_without_lock_errors(guarded, mode):
    """24 trajectories at once, mixing good, refused and runaway queries on the same file."""
    expected = {
        "SELECT name FROM people ORDER BY id": tuple((p[1],) for p in PEOPLE),
        "SELECT kind, count(*) FROM pets GROUP BY kind ORDER BY kind": (("cat", 3), ("dog", 1), ("fish", 1)),
        "SELECT p.name FROM people p JOIN pets ON pets.owner_id = p.id WHERE kind = 'dog'": (("Ann",),),
    }
    failures: list[str] = []

    def trajectory(i: int) -> None:
        for j in range(12):
            for sql, rows in expected.items():
                result = guarded(sql, mode)
                if result.rows != rows:
                    failures.append(f"thread {i}: {sql}: {result}")
            if j == 3:
                denied = guarded("DELETE FROM pets", mode)
                if denied.error_kind != "denied":
                    failures.append(f"thread {i}: DELETE not denied: {denied}")
            if j == 5 and i % 6 == 0:
                slow = guarded(RUNAWAY[0][1], mode, QueryLimits(timeout_s=0.2))
                if slow.error_kind != "interrupted":
                    failures.append(f"thread {i}: runaway not interrupted: {slow}")

    threads = [threading.Thread(target=trajectory, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, "\n".join(failures[:5])


def test_worker_heap_is_capped(zoo_path):
    """A query needing more SQLite heap than the worker's cap fails with 'out of memory'."""
    from skyrl_env_sql.sandbox import SandboxPool

    pool = SandboxPool(max_workers=1, heap_limit_bytes=8 << 20)
    try:
        # 50 MB of random bytes, allowed by the value-size limit here, not by the 8 MB heap cap
        big = QueryLimits(timeout_s=10.0, max_value_bytes=100_000_000)
        result = pool.run(zoo_path, "SELECT length(randomblob(50000000))", big, grace_s=2.0)
        assert result.error_kind == "too_big" and "out of memory" in result.error
        assert execute(zoo_path, "SELECT length(randomblob(50000000))", big).rows == ((50000000,),), "no cap in-thread"
        assert pool.run(zoo_path, "SELECT count(*) FROM pets", LIMITS, grace_s=2.0).rows == ((5,),)
    finally:
        pool.shutdown()


def test_a_worker_that_died_is_replaced(zoo_path):
    from skyrl_env_sql.sandbox import SandboxPool

    pool = SandboxPool(max_workers=1, heap_limit_bytes=1 << 30)
    try:
        assert pool.run(zoo_path, "SELECT 1", LIMITS, grace_s=2.0).ok
        (idle,) = pool._idle
        idle.process.kill()
        idle.process.wait()
        assert pool.run(zoo_path, "SELECT count(*) FROM people", LIMITS, grace_s=2.0).rows == ((5,),)
        assert pool._idle[0] is not idle
    finally:
        pool.shutdown()

"""Config classes of skyrl-env-sql (torch-free; the plugin module imports them at start-up).

* ``Text2SQLConfig``: ``[environments.text2sql]`` in a run's TOML.
* ``SyntheticDataConfig``: ``skyrl data prepare text2sql_synthetic --key value``.
* ``SkyRLSQLDataConfig``: ``skyrl data prepare text2sql --input FILE``.
"""

from __future__ import annotations

from typing import Literal

import attrs

from skyrl_core.api import non_negative, option, positive, seed_range

#: Where the OmniSQL ``data.zip`` (used by SkyRL-SQL) keeps each family's databases,
#: relative to ``db_root``. A family not listed here lives in ``<db_root>/<family>``.
OMNISQL_FAMILY_DIRS: dict[str, str] = {
    "synsql": "SynSQL-2.5M/databases",
    "spider": "spider/database",
    "spider_dev": "spider/database",
    "spider_test": "spider/test_database",
    "bird": "bird/train/train_databases",
    "bird_dev": "bird/dev/dev_databases",
}


def _omnisql_dirs() -> dict[str, str]:
    return dict(OMNISQL_FAMILY_DIRS)


def _check_family_dirs(value: object) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return f"must be a table of family name -> folder (strings), got {value!r}"
    return None


@attrs.define(kw_only=True)
class Text2SQLConfig:
    """``[environments.text2sql]``: where the databases are, limits per query, and scoring."""

    db_root: str | None = option(
        None,
        help="Folder holding the SQLite databases. A row's database is "
        "<db_root>/<family folder>/<db_id>/<db_id>.sqlite, where the family is the row's `data` "
        "column (spider, bird, synsql, ...). Relative paths are relative to the current directory.",
    )
    family_dirs: dict[str, str] = option(
        factory=_omnisql_dirs,
        help="Family -> folder under db_root. The default follows the OmniSQL data.zip layout "
        "(synsql -> SynSQL-2.5M/databases, spider -> spider/database, bird -> bird/train/train_databases); "
        "a family not listed, or whose folder lacks the database, is looked up in <db_root>/<family>.",
        check=_check_family_dirs,
    )
    default_family: str | None = option(
        None, help="Family used for rows without a `data` column (None: such rows are an error)."
    )
    query_timeout_s: float = option(
        5.0, help="Time limit of one <sql> tool query; a longer query is interrupted.", check=positive
    )
    solution_timeout_s: float = option(
        30.0,
        help="Time limit for executing the final solution and, separately, the gold query when scoring "
        "(the gold result is cached per database and query). Keep generator.env_timeout_s above twice this "
        "plus hard_limit_grace_s.",
        check=positive,
    )
    max_rows: int = option(50, help="Rows of a tool query's result shown in the observation.", check=positive)
    max_chars: int = option(
        9000,
        help="Characters of a tool query's result shown in the observation (longer output is cut).",
        check=positive,
    )
    max_cell_chars: int = option(200, help="Characters shown per value in an observation.", check=positive)
    max_value_bytes: int = option(
        1_000_000,
        help="Largest string or blob a query may build (SQLite's SQLITE_LIMIT_LENGTH); larger ones fail "
        "with 'string or blob too big'.",
        check=positive,
    )
    max_compare_rows: int = option(
        100_000,
        help="Largest result set compared when scoring; a solution returning more rows scores 0.",
        check=positive,
    )
    format_penalty: float = option(
        -1.0,
        help="Reward when the episode ends without a well-formed answer: no <solution>...</solution> "
        "before max_turns, an empty solution, or (with require_think) a reply without <think>...</think>. "
        "SkyRL-SQL uses -1.",
    )
    require_think: bool = option(
        False,
        help="Require a <think>...</think> block in every reply (SkyRL-SQL's format check); replies "
        "without one make the episode a format violation.",
    )
    respect_order: bool = option(
        True,
        help="When the gold query has a top-level ORDER BY, rows must come in the same order; "
        "false compares every result as a multiset.",
    )
    isolation: Literal["process", "thread"] = option(
        "process",
        help="'process': queries run in worker processes that are killed when a query overruns its time limit "
        "by hard_limit_grace_s (a hard bound, even for a single slow built-in call such as a huge printf "
        "width); 'thread': in the calling thread, bounded only by SQLite's progress handler.",
    )
    workers: int = option(8, help="Worker processes per training process (isolation = 'process').", check=positive)
    hard_limit_grace_s: float = option(
        2.0,
        help="Seconds past a query's time limit before its worker process is killed (isolation = 'process').",
        check=positive,
    )
    max_memory_mb: int = option(
        1024,
        help="SQLite heap limit of each worker process (isolation = 'process'); a query needing more fails "
        "with 'out of memory'.",
        check=positive,
    )
    rel_tol: float = option(1e-6, help="Relative tolerance when comparing numbers in result sets.", check=non_negative)
    abs_tol: float = option(1e-9, help="Absolute tolerance when comparing numbers in result sets.", check=non_negative)
    scoring: Literal["ours", "skyrl"] = option(
        "ours",
        help="'ours': the rules of the options above. 'skyrl': skyrl-gym's text2sql exactly, for SkyRL data and "
        "comparable numbers: the episode ends at a reply with <solution> and </solution> or at max_turns; the "
        "final reward reads the whole conversation: -1 unless it has a <think>...</think>, exactly one "
        "<solution>...</solution> with no tags inside, and <think> after every observation; else 1 when the "
        "solution's rows equal the gold query's as a set (duplicates and order ignored, no tolerance), else 0. "
        "Observations use SkyRL's wrapper and reminder. format_penalty, require_think, respect_order, rel_tol "
        "and abs_tol must keep their defaults (skyrl_env_sql/README.md, 'SkyRL scoring').",
    )

    def __attrs_post_init__(self) -> None:
        if self.scoring != "skyrl":
            return
        ours_only = ("format_penalty", "require_think", "respect_order", "rel_tol", "abs_tol")
        changed = [
            f"{f.name} = {getattr(self, f.name)!r}"
            for f in attrs.fields(type(self))
            if f.name in ours_only and getattr(self, f.name) != f.default
        ]
        if changed:
            raise ValueError(
                f"scoring = 'skyrl' uses skyrl-gym's fixed rules, so {', '.join(changed)} would have no effect; "
                f"remove {'it' if len(changed) == 1 else 'them'}, or set scoring = 'ours'"
            )


@attrs.define(kw_only=True)
class SyntheticDataConfig:
    """Options of ``skyrl data prepare text2sql_synthetic``: small generated databases + questions."""

    train_databases: int = option(6, help="Databases whose questions form the training split.", check=positive)
    eval_databases: int = option(
        2, help="Further databases whose questions form the eval split (unseen in training).", check=non_negative
    )
    questions_per_database: int = option(12, help="Questions (with gold SQL) per database.", check=positive)
    seed: int = option(
        0, help="Seed of the generator (same seed, same databases and questions).", check=seed_range
    )
    db_root: str | None = option(
        None,
        help="Where the databases are written (as <db_root>/<family>/<db_id>/<db_id>.sqlite); "
        "default <out>/databases. Point [environments.text2sql] db_root at the same folder.",
    )
    family: str = option("synthetic", help="Family name written in the rows' `data` column.")
    prompt: Literal["full", "compact"] = option(
        "full",
        help="'full': instructions plus CREATE TABLE statements (SkyRL-SQL style); 'compact': a short "
        "prompt for tiny CPU models.",
    )
    sft: bool = option(True, help="Also write sft.parquet: worked multi-turn examples for a warm start.")
    max_turns: int = option(
        3,
        help="The generator.max_turns you train with: the SFT examples' observations say how many turns "
        "are left counting from it.",
        check=positive,
    )


@attrs.define(kw_only=True)
class SkyRLSQLDataConfig:
    """Options of ``skyrl data prepare text2sql``: SkyRL-SQL / OmniSQL rows to skyrl's row format."""

    input: str | None = option(
        None,
        help="Training rows: a .parquet/.json/.jsonl file (SkyRL-SQL's train.parquet, or OmniSQL-style rows "
        "with question/schema/sql/db_id) or a dataset id `name[:split]`. Required.",
    )
    eval_input: str | None = option(None, help="Evaluation rows, same forms as `input` (optional).")
    db_root: str | None = option(
        None,
        help="When set, check that every row's database exists under this folder (same layout as "
        "[environments.text2sql] db_root) and fail listing the missing ones.",
    )
    default_family: str | None = option(None, help="Family (`data` column) for rows that have none, e.g. 'spider'.")
    prompt: Literal["full", "compact"] = option(
        "full", help="Prompt built for rows that have no `prompt` column (OmniSQL-style rows)."
    )

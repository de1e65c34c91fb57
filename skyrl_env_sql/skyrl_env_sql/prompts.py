"""Prompts for text2sql rows: instructions, the database schema and the question.

Two styles:

* ``full``: a system message explaining the turn protocol with a worked example, and a
  user message with the ``CREATE TABLE`` statements, external knowledge and the question
  (the shape of SkyRL-SQL's prompts, for real models);
* ``compact``: one line of instructions and ``table(col, ...)`` schemas, short enough for
  the tiny models of CPU tests and examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from skyrl_env_sql.executor import connect_readonly

Style = Literal["full", "compact"]

FULL_SYSTEM = """You are a data scientist who answers questions about a SQLite database with SQL.

You work in turns. In every turn, first reason inside <think>...</think>. Then do one of:
- explore: write one query inside <sql>...</sql>. It runs on the database and the result (or the error) \
comes back inside <observation>...</observation>, cut to the first 50 rows;
- answer: write the final query inside <solution>...</solution>. This ends the task.

The final query must return exactly what the question asks for: the requested columns, no extra ones. \
Each observation tells you how many turns are left; on the last one you must answer with <solution>...</solution>.

Example.
Schema: CREATE TABLE animals (id INTEGER PRIMARY KEY, species TEXT, name TEXT);
Question: How many pigs live on the farm?
<think>I need to count animals whose species is pig. First I check how species are spelled.</think>
<sql>SELECT DISTINCT species FROM animals</sql>
<observation>
species
pig
cow
(2 rows)
</observation>
<reminder>You have 4 turns left.</reminder>
<think>Species are lower case, so I filter on 'pig'.</think>
<solution>SELECT COUNT(*) FROM animals WHERE species = 'pig'</solution>"""

COMPACT_SYSTEM = "Query the SQLite database with <sql>query</sql>. Answer with <solution>query</solution>."


def schema_sql(path: str | Path) -> str:
    """The ``CREATE`` statements of a database, as stored in ``sqlite_master``."""
    conn = connect_readonly(path)
    try:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
    finally:
        conn.close()
    return "\n".join(r[0].strip().rstrip(";") + ";" for r in rows)


def compact_schema(path: str | Path) -> str:
    """``table(col, col); table(col, ...)``: a short schema for compact prompts."""
    conn = connect_readonly(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        parts = []
        for table in tables:
            cols = [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,))]
            parts.append(f"{table}({', '.join(cols)})")
    finally:
        conn.close()
    return "; ".join(parts)


def build_prompt(style: Style, question: str, schema: str, external_knowledge: str = "") -> list[dict[str, str]]:
    """The chat messages of one task; ``schema`` is in the form the style expects."""
    if style == "compact":
        return [
            {"role": "system", "content": COMPACT_SYSTEM},
            {"role": "user", "content": f"Tables: {schema}\nQuestion: {question}"},
        ]
    knowledge = f"\n\nExternal knowledge:\n{external_knowledge.strip()}" if external_knowledge.strip() else ""
    return [
        {"role": "system", "content": FULL_SYSTEM},
        {"role": "user", "content": f"Database schema:\n{schema.strip()}{knowledge}\n\nQuestion:\n{question.strip()}"},
    ]


def schema_for(style: Style, path: str | Path) -> str:
    """The schema of the database at ``path`` in the form ``build_prompt`` expects for ``style``."""
    return compact_schema(path) if style == "compact" else schema_sql(path)

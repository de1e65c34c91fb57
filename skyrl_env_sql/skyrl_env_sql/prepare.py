"""Dataset preparers: ``skyrl data prepare text2sql`` and ``skyrl data prepare text2sql_synthetic``.

Both write rows in skyrl's (SkyRL-Train's) row format for the ``text2sql`` environment::

    prompt       chat messages (instructions, schema, question)
    env_class    "text2sql"
    reward_spec  {"method": "rule", "ground_truth": <gold SQL>}
    db_id        the database's name
    data         its family (spider, bird, synsql, synthetic, ...)
    data_source  groups eval metrics
    extra_info   {"split", "index", "question"?, ...}

``prepare_skyrl_sql`` converts SkyRL-SQL's parquet (``NovaSky-AI/SkyRL-SQL-653-data-newfmt``,
already in this format: rows are checked and normalised), verl-style rows (gold in
``reward_model``) and OmniSQL/Spider-style rows (``question``, ``db_id``, ``sql`` or
``query``, optional ``schema``/``external_knowledge``; the prompt is built, the schema read
from the database when ``db_root`` is given).

``prepare_synthetic`` generates databases (``skyrl_env_sql.synthetic``) under
``<db_root>/<family>/<db_id>/<db_id>.sqlite`` plus train/eval rows on disjoint databases,
optionally ``sft.parquet`` with worked examples for a warm start, and ``corpus.txt`` (all
the text, for training a tiny model's tokenizer with ``[model.tiny] corpus``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skyrl_core.api import DataError
from skyrl_env_sql.config import OMNISQL_FAMILY_DIRS, SkyRLSQLDataConfig, SyntheticDataConfig
from skyrl_env_sql.executor import DatabaseNotFound, QueryLimits, execute
from skyrl_env_sql.layout import resolve_db_path
from skyrl_env_sql.prompts import Style, build_prompt, schema_for
from skyrl_env_sql.protocol import describe_result, observation
from skyrl_env_sql.synthetic import build_database, make_questions

ENV_CLASS = "text2sql"
SYNTHETIC_SOURCE = "text2sql_synthetic"
MAX_ERRORS_SHOWN = 12


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist(rows), partial)
    partial.replace(path)


def _row(prompt: list[dict[str, str]], gold: str, db_id: str, family: str, source: str, info: dict[str, Any]) -> dict:
    return {
        "prompt": prompt,
        "env_class": ENV_CLASS,
        "reward_spec": {"method": "rule", "ground_truth": gold},
        "db_id": db_id,
        "data": family,
        "data_source": source,
        "extra_info": info,
    }


# -- synthetic ---------------------------------------------------------------------------------


def _sft_rows(
    prompt: list[dict[str, str]], gold: str, db_path: Path, style: Style, max_turns: int
) -> list[dict[str, Any]]:
    """Two supervised examples of one task: the tool call, then (after its observation) the answer."""
    think_sql = "<think>I run the query to check its result.</think>\n" if style == "full" else ""
    think_answer = "<think>The result answers the question.</think>\n" if style == "full" else ""
    call = {"role": "assistant", "content": f"{think_sql}<sql>{gold}</sql>"}
    result = execute(db_path, gold, QueryLimits())
    text = describe_result(result, max_chars=9000, max_cell_chars=200)
    obs = {"role": "user", "content": observation(text, max_turns - 1)}
    answer = {"role": "assistant", "content": f"{think_answer}<solution>{gold}</solution>"}
    return [
        {"messages": [*prompt, call], "data_source": SYNTHETIC_SOURCE},
        {"messages": [*prompt, call, obs, answer], "data_source": SYNTHETIC_SOURCE},
    ]


def prepare_synthetic(config: SyntheticDataConfig | None, out_dir: Path) -> dict[str, Path]:
    """Generate databases and write ``train.parquet``, ``eval.parquet`` (and ``sft.parquet``).

    Returns the split files. The databases go to ``config.db_root`` (default
    ``<out_dir>/databases``); set ``[environments.text2sql] db_root`` to that folder.
    """
    cfg = config or SyntheticDataConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db_root = Path(cfg.db_root) if cfg.db_root else out_dir / "databases"
    rng = random.Random(cfg.seed)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "eval": [], "sft": []}
    for i in range(cfg.train_databases + cfg.eval_databases):
        split = "train" if i < cfg.train_databases else "eval"
        db_id = f"synthetic_{cfg.seed}_{i:03d}"
        path = db_root / cfg.family / db_id / f"{db_id}.sqlite"
        domain = build_database(path, seed=rng.randrange(2**31))
        schema = schema_for(cfg.prompt, path)
        for q in make_questions(path, rng, cfg.questions_per_database):
            prompt = build_prompt(cfg.prompt, q.question, schema)
            info = {"split": split, "index": len(splits[split]), "question": q.question, "domain": domain}
            splits[split].append(_row(prompt, q.sql, db_id, cfg.family, SYNTHETIC_SOURCE, info))
            if split == "train" and cfg.sft:
                splits["sft"].extend(_sft_rows(prompt, q.sql, path, cfg.prompt, cfg.max_turns))
    paths: dict[str, Path] = {}
    for split, rows in splits.items():
        if rows:
            paths[split] = out_dir / f"{split}.parquet"
            _write_parquet(rows, paths[split])
    paths["corpus"] = _write_corpus(splits, out_dir / "corpus.txt")
    return paths


def _write_corpus(splits: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Every prompt and worked reply as plain text: ``[model.tiny] corpus`` for a tokenizer that knows SQL."""
    lines: list[str] = []
    for rows in splits.values():
        for row in rows:
            for message in row.get("messages") or row.get("prompt") or []:
                lines.extend(message["content"].splitlines())
    partial = path.with_name(path.name + ".partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


# -- SkyRL-SQL / OmniSQL rows ------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _gold_of(row: Mapping[str, Any]) -> str | None:
    for key in ("reward_spec", "reward_model"):
        spec = row.get(key)
        if isinstance(spec, Mapping) and _text(spec.get("ground_truth")):
            return _text(spec.get("ground_truth"))
    return _text(row.get("sql")) or _text(row.get("query")) or _text(row.get("SQL"))


def convert_row(
    row: Mapping[str, Any], index: int, split: str, cfg: SkyRLSQLDataConfig
) -> tuple[dict[str, Any] | None, list[str]]:
    """One source row in skyrl's format, or ``(None, problems)``."""
    info = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
    db_id = _text(row.get("db_id")) or _text(info.get("db_id"))
    family = _text(row.get("data")) or cfg.default_family
    gold = _gold_of(row)
    problems = []
    if db_id is None:
        problems.append("field 'db_id': missing or empty")
    if family is None:
        problems.append("field 'data' (the database family, e.g. 'spider'): missing; or pass --default-family")
    if gold is None:
        problems.append("no gold SQL: expected reward_spec.ground_truth, reward_model.ground_truth, sql or query")
    prompt = row.get("prompt")
    question = _text(row.get("question"))
    if not (isinstance(prompt, (list, tuple)) and prompt) and question is None:
        problems.append("field 'prompt' (chat messages) or 'question' is needed")
    if problems:
        return None, problems
    assert db_id is not None and family is not None and gold is not None
    db_path = None
    if cfg.db_root:
        try:
            db_path = resolve_db_path(cfg.db_root, family, db_id, OMNISQL_FAMILY_DIRS)
        except (DatabaseNotFound, ValueError) as exc:
            return None, [str(exc)]
    if isinstance(prompt, (list, tuple)) and prompt:
        messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    else:
        schema = _text(row.get("schema")) or _text(row.get("db_details"))
        if schema is None and db_path is not None:
            schema = schema_for(cfg.prompt, db_path)
        if schema is None:
            return None, ["no schema: the row has no 'schema' column; pass --db-root to read it from the database"]
        knowledge = _text(row.get("external_knowledge")) or _text(row.get("evidence")) or ""
        messages = build_prompt(cfg.prompt, question or "", schema, knowledge)
    extra = {k: v for k, v in info.items() if isinstance(k, str)}
    extra.update({"split": split, "index": index})
    if question:
        extra["question"] = question
    source = _text(row.get("data_source")) or family
    return _row(messages, gold, db_id, family, source, extra), []


def _convert_split(source: str, split: str, cfg: SkyRLSQLDataConfig) -> list[dict[str, Any]]:
    from skyrl_core.api import read_source

    raw = read_source(source, what=f"skyrl data prepare text2sql ({split})")
    out, errors = [], []
    for i, row in enumerate(raw):
        converted, problems = convert_row(row, i, split, cfg)
        if converted is None:
            errors.extend(f"{source} row {i}: {p}" for p in problems)
        else:
            out.append(converted)
    if errors:
        shown = "\n".join(f"  - {e}" for e in errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise DataError(f"skyrl data prepare text2sql: {len(errors)} problem(s) in {source}:\n{shown}{more}")
    if not out:
        raise DataError(f"skyrl data prepare text2sql: {source} has no rows")
    return out


def prepare_skyrl_sql(config: SkyRLSQLDataConfig | None, out_dir: Path) -> dict[str, Path]:
    """Convert ``config.input`` (and ``eval_input``) to ``train.parquet`` (and ``eval.parquet``)."""
    cfg = config or SkyRLSQLDataConfig()
    if not cfg.input:
        raise DataError(
            "skyrl data prepare text2sql: pass --input FILE (SkyRL-SQL's train.parquet, e.g. from the "
            "NovaSky-AI/SkyRL-SQL-653-data-newfmt dataset, or OmniSQL/Spider-style .json rows); "
            "add --eval-input FILE for an eval split and --db-root DIR to check the databases"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split, source in (("train", cfg.input), ("eval", cfg.eval_input)):
        if source:
            rows = _convert_split(source, split, cfg)
            paths[split] = out_dir / f"{split}.parquet"
            _write_parquet(rows, paths[split])
    return paths

"""Reading, validating and length-filtering datasets in the SkyRL-Train row format.

A row (one prompt) has these columns (see docs/data.md):

* ``prompt``: a list of chat messages ``{"role": ..., "content": ...}`` (required);
* ``env_class``: the environment that scores it (null: ``[data] default_env_class``);
* ``reward_spec``: ``{"method": ..., "ground_truth": ...}`` (optional, read by the env);
* ``data_source``: groups eval metrics (default: the env class);
* ``extra_info`` and any other column: passed to the environment in ``extras``.

Sources are ``.parquet``, ``.json`` or ``.jsonl`` files, or a Hugging Face dataset
``name[:split]`` (a local dataset folder or a hub id), all read with ``datasets``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from skyrl_core.errors import DataError

log = logging.getLogger(__name__)

FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json"}
RESERVED = ("prompt", "env_class")
MAX_ERRORS_SHOWN = 12


@attrs.frozen
class PromptRow:
    """One validated dataset row.

    Attributes:
        uid: stable id of the row: ``<index in the concatenated sources>``.
        prompt: the chat messages (keys with null values dropped).
        env_class: the environment name (``default_env_class`` filled in).
        extras: every column except ``prompt`` and ``env_class`` (``reward_spec``,
            ``data_source``, ``extra_info``, ...), handed to the environment.
        data_source: the row's ``data_source`` or, when missing, its env class.
        where: ``"<file> row <i>"`` for messages.
    """

    uid: str
    prompt: list[dict[str, Any]]
    env_class: str
    extras: dict[str, Any]
    data_source: str
    where: str = ""


@attrs.define
class PromptDataset:
    """Validated rows of one split plus what the length filter removed."""

    rows: list[PromptRow]
    num_read: int
    num_too_long: int = 0
    sources: list[str] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> PromptRow:
        return self.rows[index]


# -- reading ---------------------------------------------------------------------------------


def split_source(source: str) -> tuple[str, str | None]:
    """``"name:split"`` -> ``("name", "split")``; files and plain names have no split."""
    if Path(source).suffix.lower() in FILE_BUILDERS or Path(source).exists():
        return source, None
    name, sep, split = source.rpartition(":")
    if sep and name and split and "/" not in split:
        return name, split
    return source, None


def check_source(source: str, what: str = "data", *, scan_lines: bool = True) -> None:
    """Fail fast (before any training) on a file source that is missing, of an unsupported type,
    or (JSON Lines, with ``scan_lines``) has a line that is not a JSON object."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in FILE_BUILDERS and not path.is_file():
        raise DataError(
            f"{what}: file not found: {source}. Check the path (relative paths are relative to the "
            "current directory), or set [data] generate to create it."
        )
    if path.is_file() and suffix not in FILE_BUILDERS:
        raise DataError(
            f"{what}: {source}: unsupported file type {suffix or '(no extension)'!r}; use "
            f"{', '.join(FILE_BUILDERS)} (e.g. convert a CSV with pandas: "
            "pd.read_csv(path).to_parquet('data.parquet'); the prompt column must hold chat messages)"
        )
    if scan_lines and suffix == ".jsonl":
        _raise_on_bad_json_line(path, source, what)


def _raise_on_bad_json_line(path: Path, source: str, what: str) -> None:
    if (bad := _first_bad_json_line(path)) is not None:
        raise DataError(f"{what}: {source}: {bad}. Every line must be one JSON object (one row).")


def _first_bad_json_line(path: Path) -> str | None:
    """``"line N: <reason>"`` for the first line of a JSON Lines file that is not a JSON object."""
    import json

    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                return f"line {number}: {exc.msg} (column {exc.colno})"
            if not isinstance(value, dict):
                return f"line {number}: expected a JSON object per line, got {type(value).__name__}"
    return None


def read_source(source: str, what: str = "data") -> list[dict[str, Any]]:
    """Read every row of one source as plain Python dicts (raises ``DataError``)."""
    import datasets

    datasets.disable_progress_bars()
    path = Path(source)
    builder = FILE_BUILDERS.get(path.suffix.lower())
    check_source(source, what, scan_lines=False)  # the reader finds a broken line; we name it below
    try:
        if builder is not None:
            ds = datasets.load_dataset(builder, data_files=[str(path)], split="train")
        else:
            name, split = split_source(source)
            ds = datasets.load_dataset(name, split=split or "train")
    except DataError:
        raise
    except Exception as exc:  # every reader failure becomes a DataError naming the source
        if path.suffix.lower() == ".jsonl":
            _raise_on_bad_json_line(path, source, what)
        hint = (
            "Check that the file is valid and that every row has the same column types."
            if builder is not None
            else "Use a .parquet/.json/.jsonl file, a local dataset folder, or a hub id `name[:split]` "
            "(the hub must be reachable)."
        )
        detail = str(exc).rstrip(". ")
        raise DataError(f"{what}: could not read {source}: {type(exc).__name__}: {detail}. {hint}") from exc
    return ds.to_list()


# -- validation ------------------------------------------------------------------------------


def _type(value: Any) -> str:
    return type(value).__name__


def _check_prompt(value: Any) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Return (clean messages, None) or (None, problem)."""
    if value is None:
        return None, "is missing; every row needs a list of chat messages"
    if isinstance(value, str):
        return None, (
            "is a string; it must be a list of chat messages like "
            '[{"role": "user", "content": "..."}]'
        )
    if not isinstance(value, (list, tuple)) or not value:
        return None, f"must be a non-empty list of chat messages, got {_type(value)} {value!r:.60}"
    out = []
    for j, msg in enumerate(value):
        if not isinstance(msg, Mapping):
            return None, f"message {j} must be an object with role and content, got {_type(msg)}"
        role, content = msg.get("role"), msg.get("content")
        if not isinstance(role, str) or not role:
            return None, f"message {j}: role must be a non-empty string, got {role!r}"
        if not isinstance(content, str):
            return None, f"message {j}: content must be a string, got {_type(content)}"
        out.append({k: v for k, v in msg.items() if v is not None})
    return out, None


def validate_rows(
    raw: Sequence[tuple[str, int, Mapping[str, Any]]],
    *,
    default_env_class: str | None = None,
    registry: Any = None,
    what: str = "data",
    env_map: Mapping[str, str] | None = None,
) -> list[PromptRow]:
    """Validate raw rows ``(source, index in source, row)``; raise one ``DataError`` listing the problems.

    ``env_map`` (``[data] env_map``) replaces environment names, after ``default_env_class``.
    With a ``registry`` (``skyrl_core.plugins.Registry``), unknown ``env_class`` names are
    reported with the registry's message (suggestions, what is installed).
    """
    from skyrl_core.specs import Kind

    errors: list[str] = []
    unknown_envs: dict[str, list[str]] = {}
    rows: list[PromptRow] = []
    known = set(registry.components[Kind.ENVIRONMENT]) if registry is not None else None
    for uid, (source, index, row) in enumerate(raw):
        where = f"{source} row {index}"
        prompt, problem = _check_prompt(row.get("prompt"))
        if problem:
            errors.append(f"{where}, field 'prompt': {problem}")
        env = row.get("env_class")
        if env is None:
            env = default_env_class
            if env is None:
                errors.append(
                    f"{where}, field 'env_class': missing or null and [data] default_env_class is not set; "
                    "fill the column or set default_env_class"
                )
        elif not isinstance(env, str) or not env:
            errors.append(f"{where}, field 'env_class': must be an environment name (string), got {env!r}")
            env = None
        if isinstance(env, str) and env_map and env in env_map:
            env = env_map[env]
        if isinstance(env, str) and known is not None and env not in known:
            unknown_envs.setdefault(env, []).append(where)
        spec = row.get("reward_spec")
        if spec is not None and not isinstance(spec, Mapping):
            errors.append(
                f"{where}, field 'reward_spec': must be an object like "
                f'{{"method": "rule", "ground_truth": ...}}, got {_type(spec)}'
            )
        elif spec is not None and spec.get("method") is not None and not isinstance(spec.get("method"), str):
            errors.append(f"{where}, field 'reward_spec.method': must be a string, got {_type(spec['method'])}")
        source_name = row.get("data_source")
        if source_name is not None and not isinstance(source_name, str):
            errors.append(f"{where}, field 'data_source': must be a string, got {_type(source_name)}")
        info = row.get("extra_info")
        if info is not None and not isinstance(info, Mapping):
            errors.append(f"{where}, field 'extra_info': must be an object, got {_type(info)}")
        turns = row.get("max_turns")
        if turns is not None and (isinstance(turns, bool) or not isinstance(turns, int) or turns < 1):
            errors.append(f"{where}, field 'max_turns': must be a positive integer, got {turns!r}")
        if prompt is None or not isinstance(env, str):
            continue
        extras = {k: v for k, v in row.items() if k not in RESERVED}
        rows.append(
            PromptRow(
                uid=str(uid),
                prompt=prompt,
                env_class=env,
                extras=extras,
                data_source=source_name if isinstance(source_name, str) and source_name else env,
                where=where,
            )
        )
    for env, places in unknown_envs.items():
        more = f" (and {len(places) - 1} more rows)" if len(places) > 1 else ""
        mapped = [k for k, v in (env_map or {}).items() if v == env]
        field = "field 'env_class'"
        if mapped:
            field += f" ({', '.join(map(repr, mapped))} -> {env!r} by [data] env_map)"
        message = registry.unknown_message(Kind.ENVIRONMENT, env, f"{places[0]}{more}, {field}")
        errors.append(message)
    if errors:
        shown = errors[:MAX_ERRORS_SHOWN]
        rest = len(errors) - len(shown)
        tail = f"\n  ... and {rest} more" if rest else ""
        body = "\n".join(f"  - {e}" for e in shown)
        raise DataError(f"{what}: {len(errors)} invalid row{'s' if len(errors) != 1 else ''}:\n{body}{tail}")
    return rows


# -- length filter ---------------------------------------------------------------------------


def prompt_lengths(
    tokenizer: Any, rows: Sequence[PromptRow], batch: int = 256, template_kwargs: Mapping[str, Any] | None = None
) -> list[int]:
    """Token count of each row's prompt after the chat template (generation prompt included;
    ``template_kwargs``: extra template variables, ``[model] chat_template_kwargs``)."""
    from skyrl_core.data.chat import render

    out: list[int] = []
    for start in range(0, len(rows), batch):
        texts = [render(tokenizer, r.prompt, add_generation_prompt=True, template_kwargs=template_kwargs)
                 for r in rows[start : start + batch]]
        encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
        out.extend(len(ids) for ids in encoded)
    return out


def load_prompt_rows(
    sources: Sequence[str],
    *,
    tokenizer: Any = None,
    max_prompt_tokens: int | None = None,
    default_env_class: str | None = None,
    registry: Any = None,
    min_rows: int = 0,
    max_rows: int | None = None,
    what: str = "data",
    env_map: Mapping[str, str] | None = None,
    template_kwargs: Mapping[str, Any] | None = None,
) -> PromptDataset:
    """Read, concatenate, validate and length-filter ``sources``.

    Args:
        sources: files or dataset names (see the module docstring), concatenated in order.
        tokenizer: needed for the length filter (skipped when None).
        max_prompt_tokens: rows whose templated prompt is longer are dropped and counted.
        default_env_class: used where ``env_class`` is missing.
        registry: validates ``env_class`` names when given.
        env_map: replaces environment names (``[data] env_map``).
        min_rows: raise ``DataError`` when fewer rows remain (e.g. ``prompts_per_step``).
        max_rows: keep only the first ``max_rows`` rows (before filtering).
        what: the config key, for messages (e.g. ``"data.train"``).
        template_kwargs: extra chat-template variables for the length filter
            (``[model] chat_template_kwargs``).
    """
    if not sources:
        raise DataError(f"{what}: no data files given; list .parquet/.json/.jsonl files in the config")
    raw: list[tuple[str, int, dict[str, Any]]] = []
    for source in sources:
        for i, row in enumerate(read_source(source, what)):
            raw.append((source, i, row))
            if max_rows is not None and len(raw) >= max_rows:
                break
        if max_rows is not None and len(raw) >= max_rows:
            break
    rows = validate_rows(raw, default_env_class=default_env_class, registry=registry, what=what, env_map=env_map)
    dropped = 0
    if tokenizer is not None and max_prompt_tokens is not None and rows:
        lengths = prompt_lengths(tokenizer, rows, template_kwargs=template_kwargs)
        kept = [r for r, n in zip(rows, lengths, strict=True) if n <= max_prompt_tokens]
        dropped = len(rows) - len(kept)
        if dropped:
            log.warning(
                "%s: dropped %d of %d rows whose templated prompt is longer than max_prompt_tokens=%d "
                "(longest: %d tokens)",
                what, dropped, len(rows), max_prompt_tokens, max(lengths),
            )
        rows = kept
    if len(rows) < min_rows:
        why = f" after dropping {dropped} rows longer than max_prompt_tokens={max_prompt_tokens}" if dropped else ""
        raise DataError(
            f"{what}: {len(rows)} usable rows{why}, but at least {min_rows} are needed (one step draws that many). "
            "Add data, raise [data] max_prompt_tokens, or lower [trainer] prompts_per_step."
        )
    return PromptDataset(rows=rows, num_read=len(raw), num_too_long=dropped, sources=list(sources))


def load_prompts(
    cfg: Any,
    registry: Any,
    tokenizer: Any,
    sources: Sequence[str],
    *,
    min_rows: int = 0,
    max_rows: int | None = None,
    what: str | None = None,
) -> PromptDataset:
    """``load_prompt_rows`` with the settings of a ``RunConfig``'s ``[data]`` section.

    ``what`` defaults to ``"data.train"`` or ``"data.eval"`` when ``sources`` is one of them.
    """
    if what is None:
        what = "data.eval" if sources is cfg.data.eval else "data.train" if sources is cfg.data.train else "data"
    return load_prompt_rows(
        sources,
        tokenizer=tokenizer,
        max_prompt_tokens=cfg.data.max_prompt_tokens,
        default_env_class=cfg.data.default_env_class,
        env_map=cfg.data.env_map,
        registry=registry,
        min_rows=min_rows,
        max_rows=max_rows,
        what=what,
        template_kwargs=cfg.model.chat_template_kwargs,
    )

"""Dataset preparers: ``skyrl data prepare gsm8k`` and ``skyrl data prepare gsm8k_synthetic``.

Both write SkyRL-format parquet files into ``--out DIR``:

* ``train.parquet``, ``test.parquet``: one row per problem::

      {"prompt": [{"role": "user", "content": "<question>\\n\\n<instruction>"}],
       "env_class": "gsm8k",
       "reward_spec": {"method": "rule", "ground_truth": "72"},
       "data_source": "gsm8k",
       "extra_info": {"split": "train", "index": 0, "question": ..., "answer": <full solution>}}

* ``sft.parquet`` (unless ``--sft false``): ``prompt`` + ``response`` (GSM8K's worked
  solution without its ``<<48/2=24>>`` calculator annotations, ending in ``#### 72``).

The returned mapping also names ``test.parquet`` as ``eval``, so that ``[data] generate``
finds the evaluation split under the name it asks for.

``gsm8k`` reads GSM8K from local JSONL files (``--data-dir`` or ``--train-file`` /
``--test-file``, GSM8K's own format) or, without them, from the Hugging Face hub
(``openai/gsm8k``, config ``main``). ``gsm8k_synthetic`` writes template word problems in
the same format (``skyrl_env_gsm8k.synthetic``): offline, for smoke runs; not GSM8K.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyrl_core.api import DataError
from skyrl_env_gsm8k.config import Gsm8kPrepareConfig, SyntheticPrepareConfig
from skyrl_env_gsm8k.reward import MARKER, after_last_marker, parse_number
from skyrl_env_gsm8k.synthetic import make_problems, write_jsonl

DATA_SOURCE = "gsm8k"
SPLITS = ("train", "test")
MAX_ERRORS_SHOWN = 10
_CALC_RE = re.compile(r"<<[^<>]*>>")

Record = dict[str, Any]


# -- reading GSM8K records --------------------------------------------------------------------


def final_answer(solution: str) -> str | None:
    """The canonical reference answer of a GSM8K solution (``"...\\n#### 1,000"`` -> ``"1000"``), or None."""
    rest = after_last_marker(solution)
    value = parse_number(rest) if rest is not None else None
    if value is None:
        return None
    return str(value.numerator) if value.denominator == 1 else str(value)


def strip_calculator(solution: str) -> str:
    """Remove GSM8K's calculator annotations: ``"48/2 = <<48/2=24>>24"`` -> ``"48/2 = 24"``."""
    return _CALC_RE.sub("", solution)


def check_records(items: Sequence[tuple[int, Any]], source: str, unit: str = "line") -> list[Record]:
    """Validate GSM8K records (``question``, ``answer`` ending in ``#### N``); one DataError lists every problem.

    ``items`` are ``(line or row number, record)`` pairs; ``source`` names where they came
    from (e.g. ``"train.jsonl"``), so every message says ``"<source>: line <n>: field ..."``.
    """
    errors: list[str] = []
    out: list[Record] = []
    for number, rec in items:
        where = f"{source}: {unit} {number}"
        if not isinstance(rec, dict):
            errors.append(f"{where}: expected a JSON object, got {type(rec).__name__}")
            continue
        question, answer = rec.get("question"), rec.get("answer")
        if not isinstance(question, str) or not question.strip():
            errors.append(f"{where}: field 'question' must be non-empty text, got {question!r:.60}")
            continue
        if not isinstance(answer, str) or MARKER not in answer:
            errors.append(f"{where}: field 'answer' must be a solution ending in '#### <number>', got {answer!r:.60}")
            continue
        if final_answer(answer) is None:
            tail = (after_last_marker(answer) or "").strip()
            errors.append(f"{where}: field 'answer': the text after the last '####' is not a number: {tail!r:.60}")
            continue
        out.append({"question": question.strip(), "answer": answer.strip()})
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise DataError(
            f"{source}: {len(errors)} invalid GSM8K record{'s' if len(errors) != 1 else ''} (each needs "
            f'{{"question": ..., "answer": "... #### N"}}):\n  {shown}{more}'
        )
    if not out:
        raise DataError(f"{source}: no GSM8K records found; the file is empty")
    return out


def read_jsonl(path: str | Path) -> list[Record]:
    """Read and validate a GSM8K-format JSONL file (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"GSM8K file not found: {path}. Pass --train-file/--test-file, or --data-dir with train.jsonl "
            "and test.jsonl"
        )
    items: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                items.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}: line {n}: not valid JSON ({exc.msg}); each line must be one JSON object"
                ) from exc
    return check_records(items, str(path))


def load_hub(hub_id: str, hub_config: str) -> dict[str, list[Record]]:
    """Load the train and test splits from the Hugging Face hub (needs network access)."""
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, hub_config)
    except Exception as exc:
        raise DataError(
            f"could not load the dataset {hub_id!r} (config {hub_config!r}) from the Hugging Face hub: "
            f"{type(exc).__name__}: {exc}. Without hub access, download GSM8K's train.jsonl and test.jsonl "
            "(github.com/openai/grade-school-math) and run `skyrl data prepare gsm8k --out DIR --data-dir FOLDER`."
        ) from exc
    out: dict[str, list[Record]] = {}
    for split in SPLITS:
        if split not in ds:
            raise DataError(f"{hub_id} ({hub_config}) has no {split!r} split; it has {sorted(ds)}")
        out[split] = check_records(list(enumerate(ds[split])), f"{hub_id}[{split}]", unit="row")
    return out


def load_records(cfg: Gsm8kPrepareConfig) -> dict[str, list[Record]]:
    """The records of each split named by the config: local files when given, else the hub."""
    files: dict[str, Path] = {}
    if cfg.data_dir is not None:
        folder = Path(cfg.data_dir)
        if not folder.is_dir():
            raise DataError(f"--data-dir {cfg.data_dir}: no such folder")
        for split in SPLITS:
            if (folder / f"{split}.jsonl").is_file():
                files[split] = folder / f"{split}.jsonl"
        if not files:
            found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
            raise DataError(f"--data-dir {cfg.data_dir}: expected train.jsonl and/or test.jsonl, found: {found}")
    if cfg.train_file is not None:
        files["train"] = Path(cfg.train_file)
    if cfg.test_file is not None:
        files["test"] = Path(cfg.test_file)
    if not files:
        return load_hub(cfg.hub_id, cfg.hub_config)
    return {split: read_jsonl(path) for split, path in files.items()}


# -- writing SkyRL rows ------------------------------------------------------------------------


def prompt_messages(question: str, instruction: str, system_prompt: str = "") -> list[dict[str, str]]:
    """The chat messages of one problem: optional system message, then question + instruction."""
    content = f"{question}\n\n{instruction}" if instruction else question
    msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
    msgs.append({"role": "user", "content": content})
    return msgs


def rl_row(rec: Record, split: str, index: int, env_class: str, instruction: str, system_prompt: str) -> Record:
    """One SkyRL RL row (see the module docstring)."""
    return {
        "prompt": prompt_messages(rec["question"], instruction, system_prompt),
        "env_class": env_class,
        "reward_spec": {"method": "rule", "ground_truth": final_answer(rec["answer"])},
        "data_source": DATA_SOURCE,
        "extra_info": {"split": split, "index": index, "question": rec["question"], "answer": rec["answer"]},
    }


def sft_row(rec: Record, instruction: str, system_prompt: str) -> Record:
    """One warm-start row: the prompt and GSM8K's worked solution as the response."""
    return {
        "prompt": prompt_messages(rec["question"], instruction, system_prompt),
        "response": strip_calculator(rec["answer"]),
        "data_source": DATA_SOURCE,
    }


def write_parquet(rows: list[Record], path: Path) -> Path:
    """Write rows to ``path`` through a temporary name, so no half-written file is ever left."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    partial = path.with_name(path.name + ".partial")
    pq.write_table(pa.Table.from_pylist(rows), partial)
    partial.replace(path)
    return path


def write_splits(
    records: dict[str, list[Record]],
    out_dir: Path,
    *,
    env_class: str,
    instruction: str,
    system_prompt: str,
    sft_records: list[Record] | None,
) -> dict[str, Path]:
    """Write train/test (and sft) parquet files; return split name to path (``eval`` aliases ``test``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for split, recs in records.items():
        rows = [rl_row(r, split, i, env_class, instruction, system_prompt) for i, r in enumerate(recs)]
        paths[split] = write_parquet(rows, out_dir / f"{split}.parquet")
    if "test" in paths:
        paths["eval"] = paths["test"]
    if sft_records:
        paths["sft"] = write_parquet(
            [sft_row(r, instruction, system_prompt) for r in sft_records], out_dir / "sft.parquet"
        )
    return paths


def _limit(records: list[Record], n: int | None) -> list[Record]:
    return records if n is None else records[:n]


def prepare_gsm8k(config: Gsm8kPrepareConfig | None, out_dir: Path) -> dict[str, Path]:
    """``skyrl data prepare gsm8k``: GSM8K from local JSONL or the hub to SkyRL parquet (see the module docstring)."""
    cfg = config or Gsm8kPrepareConfig()
    records = load_records(cfg)
    limits = {"train": cfg.max_train_rows, "test": cfg.max_test_rows}
    records = {split: _limit(recs, limits[split]) for split, recs in records.items()}
    return write_splits(
        records,
        out_dir,
        env_class=cfg.env_class,
        instruction=cfg.instruction,
        system_prompt=cfg.system_prompt,
        sft_records=records.get("train") if cfg.sft else None,
    )


def prepare_synthetic(config: SyntheticPrepareConfig | None, out_dir: Path) -> dict[str, Path]:
    """``skyrl data prepare gsm8k_synthetic``: template word problems (not GSM8K) to SkyRL parquet.

    The problems go through the same JSONL reader as real GSM8K files.
    """
    cfg = config or SyntheticPrepareConfig()
    test = make_problems(cfg.test_rows, cfg.seed + 1, level=cfg.level)
    held_out = [r["question"] for r in test]
    train = make_problems(cfg.train_rows, cfg.seed, exclude=held_out, level=cfg.level)
    sft = make_problems(cfg.sft_rows, cfg.seed + 2, exclude=held_out, level=cfg.level) if cfg.sft_rows else []
    with tempfile.TemporaryDirectory(prefix="skyrl-gsm8k-synthetic-") as tmp:
        records = {
            "train": read_jsonl(write_jsonl(Path(tmp) / "train.jsonl", train)),
            "test": read_jsonl(write_jsonl(Path(tmp) / "test.jsonl", test)),
        }
    return write_splits(
        records,
        out_dir,
        env_class=cfg.env_class,
        instruction=cfg.instruction,
        system_prompt=cfg.system_prompt,
        sft_records=sft,
    )

"""Create missing data files with a dataset preparer (``[data] generate``, ``[warm_start] generate``).

A preparer (``skyrl_register_dataset_preparers``) is ``(config, out_dir) -> {split: path}``.
``ensure_data_files`` runs it into a temporary folder and moves the splits the config
needs (``train``, ``eval``, ``sft``) to the paths the config names, only where a file is
missing; existing files are never overwritten.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from skyrl_core.errors import DataError
from skyrl_core.specs import Kind


def run_preparer(registry: Any, name: str, out_dir: Path, config: Any = None, where: str = "") -> dict[str, Path]:
    """Run the dataset preparer ``name`` into ``out_dir`` (its config class's defaults unless given)."""
    comp = registry.get(Kind.DATASET_PREPARER, name, where)
    if config is None and comp.spec.config_cls is not None:
        config = comp.spec.config_cls()
    out_dir.mkdir(parents=True, exist_ok=True)
    result = comp.load()(config, out_dir)
    return {str(k): Path(v) for k, v in dict(result).items()}


def _wanted(cfg: Any) -> dict[str, list[tuple[str, str, Path]]]:
    """preparer name -> [(split, config key, target path)] for files that are missing."""
    wanted: dict[str, list[tuple[str, str, Path]]] = {}

    def need(preparer: str, split: str, key: str, files: list[str]) -> None:
        if len(files) != 1:
            raise DataError(
                f"{key}: generating data needs exactly one file here (got {len(files)}); list a single "
                f".parquet path or remove the `generate` option"
            )
        target = Path(files[0])
        if not target.exists():
            wanted.setdefault(preparer, []).append((split, key, target))

    if cfg.data.generate:
        if cfg.data.train:
            need(cfg.data.generate, "train", "data.train", cfg.data.train)
        if cfg.data.eval:
            need(cfg.data.generate, "eval", "data.eval", cfg.data.eval)
    warm = getattr(cfg, "warm_start", None)
    if warm is not None and warm.generate and warm.data:
        need(warm.generate, "sft", "warm_start.data", warm.data)
    return wanted


def ensure_data_files(cfg: Any, registry: Any) -> list[Path]:
    """Generate every missing file named by ``data.train``/``data.eval``/``warm_start.data``.

    Returns the files created. Each is written by the preparer into a temporary folder and
    then moved into place, so a crash never leaves a half-written file under its final name.
    """
    created: list[Path] = []
    for preparer, targets in _wanted(cfg).items():
        with tempfile.TemporaryDirectory(prefix="skyrl-prepare-") as tmp:
            splits = run_preparer(registry, preparer, Path(tmp), where=f"generate = {preparer!r}")
            for split, key, target in targets:
                if split not in splits:
                    raise DataError(
                        f"{key}: dataset preparer {preparer!r} wrote no {split!r} split "
                        f"(it wrote: {', '.join(sorted(splits)) or 'nothing'})"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                shutil.copyfile(splits[split], partial)
                partial.replace(target)
                created.append(target)
    return created

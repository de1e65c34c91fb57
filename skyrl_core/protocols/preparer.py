"""Contract of a dataset preparer: writes a dataset's splits in the SkyRL row format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class DatasetPreparer(Protocol):
    """``preparer(config, out_dir) -> {split: file}``, run by ``skyrl data prepare NAME --out DIR``
    and by ``[data] generate``; ``config`` is the spec's config object, built from ``--key value``
    options or ``[data.generate_options]``. Splits are e.g. ``train``, ``eval`` and ``sft``."""

    def __call__(self, config: Any, out_dir: Path) -> dict[str, Path]: ...

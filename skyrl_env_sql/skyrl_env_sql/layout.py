"""Where a row's database lives: the SkyRL-SQL / OmniSQL layout.

A row names its database with ``db_id`` and its family with ``data`` (``spider``,
``bird``, ``synsql``, or any name of your own). The file is::

    <db_root>/<family folder>/<db_id>/<db_id>.sqlite

where the family folder comes from ``family_dirs`` (the OmniSQL ``data.zip`` layout by
default, e.g. ``synsql -> SynSQL-2.5M/databases``) or is the family name itself. Both
places are tried, so a plain ``<db_root>/<family>/<db_id>/<db_id>.sqlite`` tree works too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from skyrl_env_sql.executor import DatabaseNotFound

_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _check_name(value: str, what: str) -> str:
    # db_id/family come from data files: refuse anything that could climb out of db_root.
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"text2sql: {what} {value!r} is not a valid name (letters, digits, '_', '-', '.'; no path "
            "separators or '..')"
        )
    return value


def candidate_paths(db_root: str | Path, family: str, db_id: str, family_dirs: Mapping[str, str]) -> list[Path]:
    """The paths tried for ``(family, db_id)``, in order (without duplicates)."""
    _check_name(db_id, "db_id")
    _check_name(family, "family (column `data`)")
    root = Path(db_root).expanduser()
    folders = [family_dirs[family]] if family in family_dirs else []
    folders.append(family)
    out: list[Path] = []
    for folder in folders:
        path = root / folder / db_id / f"{db_id}.sqlite"
        if path not in out:
            out.append(path)
    return out


def resolve_db_path(db_root: str | Path | None, family: str, db_id: str, family_dirs: Mapping[str, str]) -> Path:
    """The existing database file of a row, or ``DatabaseNotFound`` naming every path tried."""
    if not db_root:
        raise DatabaseNotFound(
            "text2sql: [environments.text2sql] db_root is not set; point it at the folder holding the "
            "databases (for synthetic data: `skyrl data prepare text2sql_synthetic --out DIR`, then "
            'db_root = "DIR/databases")'
        )
    tried = candidate_paths(db_root, family, db_id, family_dirs)
    for path in tried:
        if path.is_file():
            return path
    listing = ", ".join(str(p) for p in tried)
    raise DatabaseNotFound(
        f"text2sql: database {db_id!r} (family {family!r}) not found; tried {listing}. Check "
        "[environments.text2sql] db_root and family_dirs, or the row's `db_id`/`data` columns."
    )

"""Statements kept in ``sql/queries/``, loaded by name."""

from __future__ import annotations

from functools import cache

from workdev_pipeline.settings import SQL_DIR


@cache
def query(name: str) -> str:
    """The text of ``sql/queries/<name>.sql``."""
    path = SQL_DIR / "queries" / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"no SQL file {path}")
    return path.read_text()

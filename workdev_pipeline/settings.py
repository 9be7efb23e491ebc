"""Where things live and how to reach them, from the environment.

``WORKDEV_DATABASE_URL``  PostgreSQL to use; unset means the embedded server under ``WORKDEV_HOME``.
``WORKDEV_HOME``          local state (embedded PostgreSQL data, the default lake, ``DAGSTER_HOME`` of ``dev``, derived
                          data in ``cache/``); default ``<repository>/.workdev`` -- always an absolute path, whatever
                          the working directory.
``WORKDEV_INGEST_INTERVAL_SECONDS``  the ingest sensor's minimum interval (whole seconds, at least 1; default 30):
                          how often the backlog is looked at and a sweep requested -- on average half of it is added to
                          an event's time to the lake, all of it at worst.
"""

from __future__ import annotations

import os
from pathlib import Path

from workdev_pipeline.errors import SettingInvalid

DATABASE_URL_ENV = "WORKDEV_DATABASE_URL"
HOME_ENV = "WORKDEV_HOME"
INGEST_INTERVAL_ENV = "WORKDEV_INGEST_INTERVAL_SECONDS"
DEFAULT_INGEST_INTERVAL_SECONDS = 30

#: The repository's ``sql/`` folder (the package is installed editable from the repository).
REPOSITORY_DIR = Path(__file__).resolve().parent.parent
SQL_DIR = Path(os.environ.get("WORKDEV_SQL_DIR", REPOSITORY_DIR / "sql"))
MIGRATIONS_DIR = SQL_DIR / "migrations"


def workdev_home() -> Path:
    """The local state directory (absolute), created if missing."""
    configured = os.environ.get(HOME_ENV, "").strip()
    home = Path(configured).expanduser().resolve() if configured else REPOSITORY_DIR / ".workdev"
    home.mkdir(parents=True, exist_ok=True)
    return home


def configured_database_url() -> str | None:
    """The database URL from the environment, or None when the embedded default applies."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    return url or None


def ingest_interval_seconds() -> int:
    """The ingest sensor's minimum interval from ``WORKDEV_INGEST_INTERVAL_SECONDS`` (default 30);
    :class:`SettingInvalid` naming the variable when it is not a whole number of seconds of at least 1."""
    configured = os.environ.get(INGEST_INTERVAL_ENV, "").strip()
    if not configured:
        return DEFAULT_INGEST_INTERVAL_SECONDS
    try:
        seconds = int(configured)
    except ValueError:
        seconds = 0
    if seconds < 1:
        raise SettingInvalid(f"{INGEST_INTERVAL_ENV} must be a whole number of seconds, at least 1; got {configured!r}")
    return seconds

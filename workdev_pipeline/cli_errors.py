"""How the command line reports a failure: one ``error: …`` line on stderr naming what to do, never a traceback.

:func:`explain` maps an exception (or one in its ``__cause__``/``__context__`` chain) to an exit status and that line:
status 2 for bad input (click's usage errors, the package's own input errors), 1 for an operation that could not
complete (PostgreSQL down, restarting or refusing the credentials, a full or read-only disk, the lake's storage, a
busy lock, an engine's missing credentials or unreachable endpoint). Anything it does not know is a bug and keeps its
traceback. The rules are a table of exception classes, so a new operational error is one entry here, not a
``try``/``except`` in each command: the command groups are :class:`ReportingGroup`, which turns what a command raises
into a :class:`CommandFailed` (one line, its exit status).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import click
import psycopg
from psycopg import errors as pg_errors

from workdev_pipeline.errors import OperationFailed, WorkdevError

#: Exit statuses of the command line.
BAD_INPUT = 2
FAILED = 1

DATABASE_HINT = "start it, or point WORKDEV_DATABASE_URL (--database-url) at a running server"


@dataclass(frozen=True)
class Failure:
    """What the command line prints and exits with for one error."""

    status: int
    message: str

    @property
    def line(self) -> str:
        return f"error: {self.message}"


def one_line(text: object) -> str:
    """``text`` on one line (whitespace runs collapsed), at most 500 characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= 500 else flat[:497] + "..."


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return one_line(lines[0] if lines else type(exc).__name__)


# -- the rules, one per kind of failure ----------------------------------------------------------------------------
_OS_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space, then run the command again",
    errno.EDQUOT: "disk quota exceeded: free some space, then run the command again",
    errno.EROFS: "the file system is read-only: make it writable (or point WORKDEV_LAKE_URI / WORKDEV_HOME at a "
                 "writable place), then run the command again",
    errno.EACCES: "permission denied: give this user access (or point WORKDEV_LAKE_URI / WORKDEV_HOME elsewhere)",
    errno.EPERM: "operation not permitted: give this user access (or point WORKDEV_LAKE_URI / WORKDEV_HOME "
                 "elsewhere)",
    errno.ENOTDIR: "a path component is a file, not a directory: fix WORKDEV_LAKE_URI / WORKDEV_HOME (or the path "
                   "given)",
    errno.ENOENT: "no such file or directory: check the path (WORKDEV_LAKE_URI / WORKDEV_HOME or the one given)",
}
#: How delta-rs (Rust's object store) reports an errno inside its message.
_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")


def _os_error(exc: OSError) -> Failure:
    advice = _OS_ADVICE.get(exc.errno or -1)
    where = f" ({exc.filename})" if exc.filename else ""
    if advice is None:
        return Failure(FAILED, f"{exc.strerror or _first_line(exc)}{where}")
    return Failure(FAILED, f"{advice}{where}")


def _delta_error(exc: Exception) -> Failure:
    found = _OS_ERROR_IN_TEXT.search(str(exc))
    code = int(found.group(1) or found.group(2)) if found else None
    if code in _OS_ADVICE:
        return Failure(FAILED, f"the lake's storage failed: {_OS_ADVICE[code]} -- {_first_line(exc)}")
    return Failure(FAILED, f"the lake (Delta table) failed: {_first_line(exc)}; check WORKDEV_LAKE_URI and its "
                           f"storage, then run the command again")


_AUTH_TEXT = re.compile(r"password authentication failed|no password supplied|authentication failed|"
                        r"role \S+ does not exist|pg_hba\.conf", re.IGNORECASE)
_RESTART_TEXT = re.compile(r"starting up|shutting down|in recovery mode|not yet accepting connections|"
                           r"terminating connection|server closed the connection|consuming input failed|"
                           r"connection is lost|connection is closed", re.IGNORECASE)
_RESTART_STATES = {"57P01", "57P02", "57P03", "57P05", "08006", "08003"}


def _postgres_error(exc: psycopg.Error) -> Failure:
    detail = _first_line(exc)
    state = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, (pg_errors.InvalidPassword, pg_errors.InvalidAuthorizationSpecification)) \
            or _AUTH_TEXT.search(str(exc)):
        return Failure(FAILED, f"PostgreSQL refused the credentials ({detail}): check the user and password of "
                               f"WORKDEV_DATABASE_URL (or ~/.pgpass)")
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return Failure(FAILED, f"the database role may not do this ({detail}): connect as the pipeline's role or "
                               f"the database owner")
    if isinstance(exc, (pg_errors.UndefinedTable, pg_errors.UndefinedFunction)):
        return Failure(FAILED, f"the database is not migrated ({detail}): run `workdev-pipeline migrate`")
    if isinstance(exc, pg_errors.LockNotAvailable):
        return Failure(FAILED, f"a lock is held by another session ({detail}): run the command again once it ends")
    if isinstance(exc, (pg_errors.DiskFull, pg_errors.OutOfMemory, pg_errors.TooManyConnections)):
        return Failure(FAILED, f"PostgreSQL is out of resources ({detail}): free them, then run the command again")
    if state in _RESTART_STATES or _RESTART_TEXT.search(str(exc)):
        return Failure(FAILED, f"PostgreSQL went away or is restarting ({detail}): run the command again once it "
                               f"accepts connections")
    if isinstance(exc, psycopg.OperationalError):
        return Failure(FAILED, f"cannot reach PostgreSQL ({detail}): {DATABASE_HINT}")
    return Failure(FAILED, f"PostgreSQL: {detail}")


def _adbc_error(exc: Exception) -> Failure:  # the ADBC driver streams the events out of PostgreSQL
    return Failure(FAILED, f"cannot read from PostgreSQL ({_first_line(exc)}): {DATABASE_HINT}")


_MISSING_ENV = re.compile(r'environment variable "(\w+)" which is not set')


def _dagster_config_error(exc: Exception) -> Failure | None:
    missing = sorted(set(_MISSING_ENV.findall(str(exc)) +
                         [m for e in getattr(exc, "errors", []) for m in _MISSING_ENV.findall(str(e))]))
    if missing:
        return Failure(FAILED, f"configuration missing: set {', '.join(missing)} (see docs/engines.md)")
    return None


def _engine_auth_error(exc: Exception) -> Failure:
    return Failure(FAILED, f"the engine refused or could not find its credentials ({_first_line(exc)}): set them "
                           f"as docs/engines.md says (BIGQUERY_CREDENTIALS, REDSHIFT_USER / REDSHIFT_PASSWORD)")


def _engine_error(exc: Exception) -> Failure:
    return Failure(FAILED, f"the engine failed or is unreachable ({_first_line(exc)}): check its endpoint and "
                           f"status, then run the command again")


def _usage(exc: click.ClickException) -> Failure:
    ctx = getattr(exc, "ctx", None)
    see = f" (see `{ctx.command_path} --help`)" if isinstance(exc, click.UsageError) and ctx is not None else ""
    return Failure(exc.exit_code, one_line(exc.format_message()) + see)


def _package(exc: WorkdevError) -> Failure:
    return Failure(FAILED if isinstance(exc, OperationFailed) else BAD_INPUT, one_line(exc))


def _rules() -> Iterator[tuple[type[BaseException] | tuple[type[BaseException], ...],
                              Callable[[BaseException], Failure | None]]]:
    """(exception classes, rule), most specific first; the engines' libraries only when installed."""
    yield click.ClickException, _usage
    yield WorkdevError, _package
    yield psycopg.Error, _postgres_error
    try:
        from deltalake.exceptions import DeltaError
    except ImportError:  # pragma: no cover - a dependency of the package
        pass
    else:
        yield DeltaError, _delta_error
    try:
        import adbc_driver_manager
    except ImportError:  # pragma: no cover
        pass
    else:
        yield adbc_driver_manager.Error, _adbc_error
    try:
        from dagster._core.errors import DagsterInvalidConfigError
    except ImportError:  # pragma: no cover
        pass
    else:
        yield DagsterInvalidConfigError, _dagster_config_error
    try:
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions
    except ImportError:  # pragma: no cover
        pass
    else:
        yield (auth_exceptions.GoogleAuthError, api_exceptions.Unauthorized, api_exceptions.Forbidden), \
            _engine_auth_error
        yield (api_exceptions.GoogleAPIError,), _engine_error
    try:
        import redshift_connector
    except ImportError:  # pragma: no cover
        pass
    else:
        yield redshift_connector.Error, _redshift_error
    try:
        import requests
    except ImportError:  # pragma: no cover
        pass
    else:
        yield requests.ConnectionError, _engine_error
    yield OSError, _os_error


def _redshift_error(exc: Exception) -> Failure:
    text = str(exc)
    if "28000" in text or "28P01" in text or _AUTH_TEXT.search(text):
        return _engine_auth_error(exc)
    return _engine_error(exc)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def explain(exc: BaseException) -> Failure | None:
    """The exit status and line for ``exc`` -- the first exception of its chain a rule knows -- or None (a bug)."""
    rules = list(_rules())
    for link in _chain(exc):
        for classes, rule in rules:
            if isinstance(link, classes):
                failure = rule(link)
                if failure is not None:
                    return failure
    return None


class CommandFailed(click.ClickException):
    """A command's failure as click shows it: the one line of :func:`explain`, and its exit status."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.exit_code = failure.status

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


class ReportingGroup(click.Group):
    """A command group whose commands' known failures become :class:`CommandFailed` (bugs keep their traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            failure = explain(exc)
            if failure is None:
                raise
            raise CommandFailed(failure) from exc

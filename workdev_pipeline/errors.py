"""Errors raised by the event store and its client, one class per way an event or a query can be wrong.

The SQL functions raise SQLSTATEs of class ``WD`` (see ``sql/migrations/0004_emit.sql``); the client maps
each to the class below, so callers can catch exactly what they expect.
"""

from __future__ import annotations

import re


class WorkdevError(Exception):
    """Base of every error this package raises on purpose: bad input unless it is an :class:`OperationFailed`."""


class OperationFailed(WorkdevError):
    """An operation could not complete for a reason outside its input (a busy lock, a server that does not start);
    the command line exits 1 for these, 2 for the other errors of this package."""


class SettingInvalid(WorkdevError, ValueError):
    """A setting of the environment holds a value it cannot take (the message names the variable)."""


class EventRejected(WorkdevError, ValueError):
    """An event was refused; nothing of its call was written.

    ``batch_position`` is the 0-based index of the offending event in an ``emit_many`` call, if any.
    """

    sqlstate = "WD000"

    def __init__(self, message: str, *, batch_position: int | None = None) -> None:
        super().__init__(message)
        self.batch_position = batch_position


class UnknownEventType(EventRejected):
    sqlstate = "WD001"


class InactiveEventType(EventRejected):
    sqlstate = "WD002"


class InvalidPayload(EventRejected):
    """event_data or metadata is not a JSON object (or not JSON at all)."""

    sqlstate = "WD003"


class PayloadTooDeep(InvalidPayload):
    """event_data or metadata nests deeper than ``workdev_pipeline.limits.MAX_PAYLOAD_DEPTH`` (32) levels."""

    sqlstate = "WD011"


class PayloadTooLarge(EventRejected):
    sqlstate = "WD004"


class MissingRequiredKeys(EventRejected):
    sqlstate = "WD005"


class UserRequired(EventRejected):
    sqlstate = "WD006"


class TimestampOutOfRange(EventRejected):
    sqlstate = "WD007"


class InvalidField(EventRejected):
    """A field has the wrong form: not a UUID, too long, a naive datetime, ..."""

    sqlstate = "WD008"


class QueryLimitExceeded(WorkdevError, ValueError):
    """A query asked for more than the read functions allow (range, page size, offset)."""

    sqlstate = "WD010"


class AccessDenied(WorkdevError, PermissionError):
    """A read the calling role may not make: the application role without a signed-in user
    (``workdev.user_id``), or asking for another user's events."""

    sqlstate = "WD012"


class MigrationError(OperationFailed):
    """The database schema cannot be brought up to date safely."""


EVENT_ERRORS: dict[str, type[EventRejected]] = {
    cls.sqlstate: cls
    for cls in (UnknownEventType, InactiveEventType, InvalidPayload, PayloadTooDeep, PayloadTooLarge,
                MissingRequiredKeys, UserRequired, TimestampOutOfRange, InvalidField)
}

_POSITION = re.compile(r"batch_position=(\d+)")


def from_database_error(exc: Exception) -> WorkdevError | None:
    """The package error matching a database error raised by our SQL functions, or None."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc)).strip()
    if sqlstate == QueryLimitExceeded.sqlstate:
        return QueryLimitExceeded(message)
    if sqlstate == AccessDenied.sqlstate:
        return AccessDenied(message)
    cls = EVENT_ERRORS.get(sqlstate or "")
    if cls is None:
        return None
    match = _POSITION.search(getattr(diag, "message_detail", None) or "")
    return cls(message, batch_position=int(match.group(1)) if match else None)

"""What retention and erasure share: the governance lock, the ledger's keyed hashes, instants given as text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg

from workdev_pipeline.errors import WorkdevError
from workdev_pipeline.sql_files import query

#: How far ahead of this machine's clock an ``as_of`` may be (clock skew), no more: a retention run "as of"
#: the future would delete events that have not expired yet.
AS_OF_TOLERANCE = timedelta(minutes=1)


class GovernanceInputError(WorkdevError, ValueError):
    """A retention or erasure request is malformed (a bad instant, a user id that is not a UUID, ...)."""


@contextmanager
def governance_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Retention runs and erasure requests of one database take turns (a session-level advisory lock, released
    by PostgreSQL if the process dies). Each holds the warehouse consumer's own lock only while it rewrites
    days, so sweeps go on in between."""
    conn.execute(query("governance/lock"))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute(query("governance/unlock"))


def erasure_key(conn: psycopg.Connection) -> bytes:
    row = conn.execute(query("governance/erasure_key")).fetchone()
    if row is None:
        raise WorkdevError("the erasure hash key is missing from governance_keys (migration 0010)")
    return bytes(row[0])


def keyed_hash(key: bytes, value: str) -> str:
    """The ledger's hash of a value: SHA-256 of the key followed by the value's UTF-8 bytes, in hex. SQL computes
    the same as ``encode(sha256(key || convert_to(value, 'UTF8')), 'hex')``. Without the key (which analysts
    cannot read) a hash of an IP address or an email cannot be reversed by trying candidates."""
    return hashlib.sha256(key + value.encode()).hexdigest()


#: Joins an IP address and a user agent into the one value the ``ip_user_agent`` hash is taken of.
PAIR_SEPARATOR = "\x1f"


def parse_instant(value: str | datetime | None, *, now: datetime | None = None) -> datetime:
    """An aware UTC instant from ISO 8601 text (naive means UTC), a datetime, or None (now). An instant more than
    a minute ahead of the clock is refused."""
    now = now or datetime.now(UTC)
    if value is None or value == "":
        return now
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise GovernanceInputError(f"as_of {value!r} is not an ISO 8601 instant "
                                       "(e.g. 2026-11-25T02:00:00+00:00)") from None
    else:
        parsed = value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    if parsed > now + AS_OF_TOLERANCE:
        raise GovernanceInputError(f"as_of {parsed.isoformat()} is in the future: retention as of a future instant "
                                   "would delete events that have not expired yet")
    return parsed

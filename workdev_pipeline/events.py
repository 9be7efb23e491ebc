"""One event on its way into the store: checked and serialised once, then sent by function call or COPY.

The database decides whether an event is acceptable (``event_rejection`` in SQL). What is checked here is
only what cannot even be sent: values that are not UUIDs, naive datetimes, payloads that are not JSON.
"""

from __future__ import annotations

import math
import os
import random
import struct
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg.adapt import PyFormat

from workdev_pipeline.errors import EventRejected, InvalidField, InvalidPayload, PayloadTooDeep
from workdev_pipeline.payloads import depth_message

_STAGING_COLUMNS = ("ord", "event_id", "id_supplied", "event_type", "user_id", "entity_type", "entity_id",
                    "event_data", "metadata", "source", "timestamp", "session_id")
# What psycopg formats each column from. A binary COPY names no types, so the uuid and jsonb columns go as their
# binary forms made by staging_row (16 bytes; b"\x01" + JSON text), passed through as they are by psycopg's bytes
# dumper (the one in C): its own uuid and jsonb dumpers are Python methods, a call per value.
_STAGING_WIRE_TYPES = ("int4", "bytea", "bool", "text", "bytea", "text", "text", "bytea", "bytea", "text",
                       "timestamptz", "bytea")
_COPY_SQL = "COPY pg_temp.event_ingest_batch ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(f'"{c}"' for c in _STAGING_COLUMNS))
_BYTES_AS_THEY_ARE = psycopg.adapters.get_dumper(bytes, PyFormat.BINARY)


_COUNTER_BITS = 42  # RFC 9562 section 6.2, method 1: rand_a (12 bits) and the top 30 bits of rand_b
_LOW_COUNTER = (1 << 30) - 1
_V7_BITS = 0x7 << 76 | 0x2 << 62  # version 7, RFC 4122 variant


class _EventIdClock:
    """UUIDv7 event ids (RFC 9562): 48 bits of Unix milliseconds, a 42-bit counter, 32 random bits. The counter
    starts at a random value each new millisecond and counts up within it, so the ids of a process are strictly
    increasing and a batch's come in bulk from one clock reading. Random bits come from a generator seeded by the
    OS once per process (again after a fork, so forked workers never share a sequence): ids must be unique, not
    secret."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(os.urandom(32))
        self._ms = self._counter = 0
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._lock = threading.Lock()
        self._rng.seed(os.urandom(32))
        self._ms = self._counter = 0

    def take(self, count: int) -> list[int]:
        """``count`` consecutive ids as 128-bit integers."""
        if count < 1:
            return []
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms > self._ms:
                counter = self._rng.getrandbits(_COUNTER_BITS - 1)
            else:  # the same millisecond, or the clock went back: keep counting after the last id
                ms, counter = self._ms, self._counter + 1
            if counter + count > 1 << _COUNTER_BITS:  # the counter is spent: borrow the next millisecond
                ms, counter = ms + 1, self._rng.getrandbits(_COUNTER_BITS - 1)
            self._ms, self._counter = ms, counter + count - 1
            tails = struct.unpack(f"<{count}I", self._rng.randbytes(4 * count))
        base = (ms & (1 << 48) - 1) << 80 | _V7_BITS
        return [base | (c >> 30) << 64 | (c & _LOW_COUNTER) << 32 | t
                for c, t in zip(range(counter, counter + count), tails, strict=True)]


_UUID = uuid.UUID
_new_object, _set_slot, _UNKNOWN_SAFETY = object.__new__, object.__setattr__, uuid.SafeUUID.unknown


def uuid_of_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to be a valid 128-bit UUID: its two slots set as its own
    ``__init__`` sets them, without the argument checks (a third of the time)."""
    made = _new_object(_UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", _UNKNOWN_SAFETY)
    return made


_IDS = _EventIdClock()


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): time-ordered, index-friendly."""
    return uuid_of_int(_IDS.take(1)[0])


def to_uuid(value: uuid.UUID | str | None, name: str, position: int | None = None) -> uuid.UUID | None:
    """``value`` as a UUID (None stays None); anything else is an :class:`InvalidField` naming the field."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidField(f"{_where(position)}{name} is not a valid UUID: {str(value)[:80]!r}", batch_position=position)


def _where(position: int | None) -> str:
    return "" if position is None else f"event #{position} of the batch: "


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return _decimal_number(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _decimal_number(value: Decimal) -> orjson.Fragment:
    """A Decimal as a JSON number with every digit (never through a float); NaN and infinities are refused."""
    if not value.is_finite():
        raise ValueError(f"{value} is not a JSON number")
    return orjson.Fragment(str(value))  # '12345678901234567.89', '1E+30': JSON numbers, exact in jsonb


_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
_JSON_KEY_WORDS = {True: "true", False: "false", None: "null"}


def _explicit(value: Any) -> Any:
    """``value`` with what orjson refuses made explicit the way the standard library's encoder would write it:
    integers past 64 bits as their digits, keys that are int, float, bool or None as strings."""
    if isinstance(value, Mapping):
        return {_json_key(k): _explicit(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_explicit(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _UINT64_MAX:
        return orjson.Fragment(int.__repr__(value))
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return _JSON_KEY_WORDS[key]
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        if not math.isfinite(key):
            raise ValueError(f"{key} is not a JSON number")
        return float.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _non_finite(value: Any) -> bool:
    """True when ``value`` holds a NaN or infinite float (which orjson writes as null)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(_non_finite(v) for v in value)
    return False


def encode_json(value: Any) -> str:
    """JSON text of ``value`` (see :func:`encode_json_bytes`)."""
    return encode_json_bytes(value).decode()


def encode_json_bytes(value: Any) -> bytes:
    """JSON of ``value`` as UTF-8 by orjson (about 10x the standard library here, the hot path of bulk emission).
    Numbers keep every digit: Decimals and integers of any size are written as their digits, never through a
    float. What orjson refuses (integers past 64 bits, non-string keys) is made explicit and encoded again; what
    remains unserialisable raises TypeError, NaN and infinities ValueError, nesting past orjson's limit (255
    levels) RecursionError."""
    try:
        data = orjson.dumps(value, default=_json_default)
    except TypeError as exc:
        if "Recursion limit" in str(exc):
            raise RecursionError(str(exc)) from None
        data = orjson.dumps(_explicit(value), default=_json_default)
    # find, not in: bytes' in tries its operand as an integer first, an exception raised and cleared (~1 us)
    if data.find(b"null") >= 0 and _non_finite(value):  # orjson writes NaN and Infinity as null
        raise ValueError("NaN and infinities are not JSON numbers")
    return data


def to_json_object(value: Any, name: str, position: int | None = None) -> str:
    """Serialise a mapping to JSON text that PostgreSQL's jsonb will accept, or raise InvalidPayload."""
    return _json_object(value, name, position).decode()


def _json_object(value: Any, name: str, position: int | None) -> bytes:
    if type(value) is not dict and not isinstance(value, Mapping):
        raise InvalidPayload(f"{_where(position)}{name} must be a JSON object (a mapping), got {type(value).__name__}",
                             batch_position=position)
    try:
        data = encode_json_bytes(value)
    except RecursionError:  # nested far past the depth limit (the database checks the depth of what is sent)
        raise PayloadTooDeep(f"{_where(position)}{depth_message(name)}", batch_position=position) from None
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidPayload(f"{_where(position)}{name} is not valid JSON: {exc}", batch_position=position) from None
    if data.find(b"\\u0000") >= 0:  # see encode_json_bytes
        raise InvalidPayload(f"{_where(position)}{name} contains a NUL character, which PostgreSQL cannot store",
                             batch_position=position)
    return data


def _text(value: Any, name: str, position: int | None) -> str | None:
    if value is None:
        return None
    if type(value) is str and value.isascii() and "\x00" not in value:  # the common case, checked cheaply
        return value
    if isinstance(value, uuid.UUID | int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidField(f"{_where(position)}{name} must be a string, got {type(value).__name__}",
                           batch_position=position)
    if "\x00" in value:
        raise InvalidField(f"{_where(position)}{name} contains a NUL character", batch_position=position)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidField(f"{_where(position)}{name} is not valid Unicode text",
                               batch_position=position) from None
    return value


def _timestamp(value: Any, position: int | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidField(f"{_where(position)}timestamp {value[:40]!r} is not ISO-8601",
                               batch_position=position) from None
    if not isinstance(value, datetime):
        raise InvalidField(f"{_where(position)}timestamp must be a datetime, got {type(value).__name__}",
                           batch_position=position)
    if value.tzinfo is None:
        raise InvalidField(f"{_where(position)}timestamp must be timezone-aware, got {value.isoformat()}",
                           batch_position=position)
    return value


_EVENT_FIELDS = frozenset({"event_type", "event_data", "user_id", "entity_type", "entity_id", "metadata",
                           "source", "session_id", "timestamp", "event_id"})
_JSONB = b"\x01"  # jsonb's binary form: version 1, then the text
_EMPTY_OBJECT = _JSONB + b"{}"


def staging_row(event: Any, position: int | None, default_source: str | None,
                new_id: int | None) -> tuple[tuple[Any, ...], uuid.UUID | int | None]:
    """An event mapping (``event_type`` and any of ``event_data``, ``user_id``, ``entity_type``, ``entity_id``,
    ``metadata``, ``source``, ``session_id``, ``timestamp``, ``event_id``) as a row of the staging COPY
    (``_STAGING_COLUMNS``: ``position`` first; ids in uuid's binary form, payloads in jsonb's) and its event id
    (a supplied one as a UUID, ``new_id`` as it is), or the :class:`EventRejected` saying why it cannot be sent.
    Without an ``event_id`` its id is the UUIDv7 ``new_id`` (None: left to the server). The common types are let
    through by cheap tests, the rest fully checked."""
    if type(event) is not dict and not isinstance(event, Mapping):
        raise InvalidPayload(f"event #{position} of the batch is a {type(event).__name__}, not a mapping",
                             batch_position=position)
    if not event.keys() <= _EVENT_FIELDS:
        unknown = ", ".join(sorted(set(event) - _EVENT_FIELDS))
        raise InvalidField(f"event #{position} of the batch has unknown fields: {unknown}", batch_position=position)
    get = event.get
    event_id = get("event_id")
    supplied = event_id is not None
    if supplied:
        if type(event_id) is not _UUID:
            event_id = to_uuid(event_id, "event_id", position)
        id_bytes = event_id.int.to_bytes(16, "big")
    elif new_id is None:
        id_bytes = None
    else:
        event_id = new_id
        id_bytes = new_id.to_bytes(16, "big")
    event_type = get("event_type")
    if type(event_type) is not str or not event_type.isascii() or "\x00" in event_type:
        event_type = _text(event_type, "event_type", position)
    user_id = get("user_id")
    if user_id is not None:
        if type(user_id) is not _UUID:
            user_id = to_uuid(user_id, "user_id", position)
        user_id = user_id.int.to_bytes(16, "big")
    entity_type = get("entity_type")
    if entity_type is not None and (type(entity_type) is not str or not entity_type.isascii()
                                    or "\x00" in entity_type):
        entity_type = _text(entity_type, "entity_type", position)
    entity_id = get("entity_id")
    if entity_id is not None and (type(entity_id) is not str or not entity_id.isascii() or "\x00" in entity_id):
        entity_id = _text(entity_id, "entity_id", position)
    event_data = get("event_data")
    # a copy of orjson's result, not the result itself: orjson's buffers are sized for growth, and keeping 20,000
    # of them costs the process ~1.5 us a payload in fresh memory
    event_data = _JSONB + _json_object(event_data if event_data is not None else {}, "event_data", position)
    metadata = get("metadata")
    metadata = _EMPTY_OBJECT if metadata is None else _JSONB + _json_object(metadata, "metadata", position)
    source = get("source") or default_source
    if source is not None and (type(source) is not str or not source.isascii() or "\x00" in source):
        source = _text(source, "source", position)
    timestamp = get("timestamp")
    if timestamp is not None and (type(timestamp) is not datetime or timestamp.tzinfo is None):
        timestamp = _timestamp(timestamp, position)
    session_id = get("session_id")
    if session_id is not None:
        if type(session_id) is not _UUID:
            session_id = to_uuid(session_id, "session_id", position)
        session_id = session_id.int.to_bytes(16, "big")
    return ((position, id_bytes, supplied, event_type, user_id, entity_type, entity_id, event_data, metadata, source,
             timestamp, session_id), event_id)


class PreparedBatch(NamedTuple):
    """Staging rows for a batch's events and their ids (supplied ones as UUIDs, generated ones as their 128-bit
    integers), up to the first event that cannot even be sent (``error``, else None)."""

    rows: list[tuple[Any, ...]]
    ids: list[uuid.UUID | int]
    error: EventRejected | None

    @property
    def ids_supplied(self) -> bool:
        return any(row[2] for row in self.rows)


def prepare_batch(events: Sequence[Any], first_position: int, default_source: str | None) -> PreparedBatch:
    """Staging rows for ``events`` (positions from ``first_position``), their ids drawn in one go."""
    new_ids = _IDS.take(len(events))
    rows: list[tuple[Any, ...]] = []
    ids: list[uuid.UUID | int] = []
    append_row, append_id = rows.append, ids.append
    try:
        for offset, event in enumerate(events):
            row, event_id = staging_row(event, first_position + offset, default_source, new_ids[offset])
            append_row(row)
            append_id(event_id)
    except EventRejected as exc:
        return PreparedBatch(rows, ids, exc)
    return PreparedBatch(rows, ids, None)


def _uuid_of(value: bytes | None) -> uuid.UUID | None:
    return None if value is None else _UUID(bytes=value)


def function_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Arguments of ``emit_platform_event`` for a staging row (a generated id is left to the server)."""
    (_, event_id, supplied, event_type, user_id, entity_type, entity_id, event_data, metadata, source, timestamp,
     session_id) = row
    return (event_type, _uuid_of(user_id), entity_type, entity_id, event_data[1:].decode(), metadata[1:].decode(),
            source, _uuid_of(session_id), _uuid_of(event_id) if supplied else None, timestamp)


class StagingCopy:
    """COPYs prepared rows into the session's batch table (``open_event_batch()`` makes it, once a session)."""

    def __init__(self, cursor: psycopg.Cursor) -> None:
        self._cursor = cursor
        cursor.adapters.register_dumper(None, _BYTES_AS_THEY_ARE)
        cursor.execute("SELECT open_event_batch()")

    def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Binary COPY: about half the client's formatting work and the server's parsing of text COPY."""
        with self._cursor.copy(_COPY_SQL) as copy:
            copy.set_types(_STAGING_WIRE_TYPES)
            write_row = copy.write_row
            for row in rows:
                write_row(row)

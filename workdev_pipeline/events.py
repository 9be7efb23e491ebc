"""One event on its way into the store: checked and serialised once, then sent by function call or COPY.

The database decides whether an event is acceptable (``event_rejection`` in SQL). What is checked here is
only what cannot even be sent: values that are not UUIDs, naive datetimes, payloads that are not JSON.
"""

from __future__ import annotations

import math
import os
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg.types.json import set_json_dumps

from workdev_pipeline.errors import InvalidField, InvalidPayload, PayloadTooDeep
from workdev_pipeline.payloads import depth_message

_STAGING_COLUMNS = ("ord", "event_id", "id_supplied", "event_type", "user_id", "entity_type", "entity_id",
                    "event_data", "metadata", "source", "timestamp", "session_id")
_STAGING_TYPES = ("int4", "uuid", "bool", "text", "uuid", "text", "text", "jsonb", "jsonb", "text", "timestamptz",
                  "uuid")
_COPY_SQL = "COPY pg_temp.event_ingest_batch ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(f'"{c}"' for c in _STAGING_COLUMNS))


def _json_text_as_is(text: str) -> str:
    """The jsonb dumper's serialiser for the staging COPY: payloads arrive already serialised (and checked)."""
    return text


class _IdRandomness:
    """Random bits for event ids: a generator seeded from the OS once per process (and again after a fork,
    so forked workers never repeat each other's ids). Ids must be unique, not secret; one ``os.urandom``
    call per id costs a system call that shows in bulk emission."""

    def __init__(self) -> None:
        self.rng = random.Random(os.urandom(32))
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.rng.seed(os.urandom(32))


_RANDOMNESS = _IdRandomness()
_V7_CLEAR = ~(0xF << 76 | 0x3 << 62)
_V7_SET = 0x7 << 76 | 0x2 << 62  # version 7, RFC 4122 variant


def new_event_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then randomness. Time-ordered, index-friendly."""
    value = (time.time_ns() // 1_000_000 & (1 << 48) - 1) << 80 | _RANDOMNESS.rng.getrandbits(80)
    return uuid.UUID(int=value & _V7_CLEAR | _V7_SET)


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
    """JSON text of ``value`` by orjson (about 10x the standard library here, the hot path of bulk emission).
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
    if b"null" in data and _non_finite(value):  # orjson writes NaN and Infinity as null
        raise ValueError("NaN and infinities are not JSON numbers")
    return data.decode()


def to_json_object(value: Any, name: str, position: int | None = None) -> str:
    """Serialise a mapping to JSON text that PostgreSQL's jsonb will accept, or raise InvalidPayload."""
    if not isinstance(value, Mapping):
        raise InvalidPayload(f"{_where(position)}{name} must be a JSON object (a mapping), got {type(value).__name__}",
                             batch_position=position)
    try:
        text = encode_json(value)
    except RecursionError:  # nested far past the depth limit (the database checks the depth of what is sent)
        raise PayloadTooDeep(f"{_where(position)}{depth_message(name)}", batch_position=position) from None
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise InvalidPayload(f"{_where(position)}{name} is not valid JSON: {exc}", batch_position=position) from None
    if "\\u0000" in text:
        raise InvalidPayload(f"{_where(position)}{name} contains a NUL character, which PostgreSQL cannot store",
                             batch_position=position)
    return text


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


class EventRow(NamedTuple):
    """An event ready to send: ids parsed, payloads serialised."""

    event_id: uuid.UUID
    id_supplied: bool
    event_type: str | None
    user_id: uuid.UUID | None
    entity_type: str | None
    entity_id: str | None
    event_data: str
    metadata: str
    source: str | None
    timestamp: datetime | None
    session_id: uuid.UUID | None

    @classmethod
    def build(cls, *, event_type: Any, event_data: Any, user_id: Any = None, entity_type: Any = None,
              entity_id: Any = None, metadata: Any = None, source: Any = None, session_id: Any = None,
              timestamp: Any = None, event_id: Any = None, position: int | None = None) -> EventRow:
        supplied = to_uuid(event_id, "event_id", position)
        return cls(
            event_id=supplied or new_event_id(),
            id_supplied=supplied is not None,
            event_type=_text(event_type, "event_type", position),
            user_id=to_uuid(user_id, "user_id", position),
            entity_type=_text(entity_type, "entity_type", position),
            entity_id=_text(entity_id, "entity_id", position),
            event_data=to_json_object(event_data, "event_data", position),
            metadata=to_json_object(metadata if metadata is not None else {}, "metadata", position),
            source=_text(source, "source", position),
            timestamp=_timestamp(timestamp, position),
            session_id=to_uuid(session_id, "session_id", position),
        )

    def function_params(self) -> tuple[Any, ...]:
        """Arguments of ``emit_platform_event`` (a generated id is left to the server)."""
        return (self.event_type, self.user_id, self.entity_type, self.entity_id, self.event_data, self.metadata,
                self.source, self.session_id, self.event_id if self.id_supplied else None, self.timestamp)


class StagingCopy:
    """COPYs prepared rows into the session's batch table (``open_event_batch()`` makes it, once a session)."""

    def __init__(self, cursor: psycopg.Cursor) -> None:
        self._cursor = cursor
        set_json_dumps(_json_text_as_is, context=cursor)
        cursor.execute("SELECT open_event_batch()")

    def write(self, first_position: int, rows: Sequence[EventRow]) -> None:
        """Binary COPY: about half the client's formatting work and the server's parsing of text COPY."""
        with self._cursor.copy(_COPY_SQL) as copy:
            copy.set_types(_STAGING_TYPES)
            for offset, r in enumerate(rows):
                copy.write_row((first_position + offset, r.event_id, r.id_supplied, r.event_type, r.user_id,
                                r.entity_type, r.entity_id, r.event_data, r.metadata, r.source, r.timestamp,
                                r.session_id))

"""The store's rows as the Arrow driver decodes them (``pipeline_store_rows``: uuids as 16 bytes, JSON as text) ->
the events as the pipeline reads them: ids as text, the user's role and tenure joined from ``user_attributes``.
The same rows as the ``pipeline_event_rows`` view gives in SQL."""

from __future__ import annotations

import binascii
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: The columns of an extracted batch, in order (the transformation and ingest_times read them by name).
PIPELINE_SCHEMA = pa.schema([
    pa.field("event_id", pa.string()),
    pa.field("event_type", pa.string()),
    pa.field("event_category", pa.string()),
    pa.field("user_id", pa.string()),
    pa.field("user_role", pa.string()),
    pa.field("user_tenure_days", pa.int32()),
    pa.field("entity_type", pa.string()),
    pa.field("entity_id", pa.string()),
    pa.field("event_data", pa.string()),
    pa.field("metadata", pa.string()),
    pa.field("ip_address", pa.string()),
    pa.field("user_agent", pa.string()),
    pa.field("source", pa.string()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC")),
    pa.field("session_id", pa.string()),
    pa.field("tx_id", pa.int64()),
])

_UUIDS = ("event_id", "user_id", "session_id")
_UUID_BYTES = pa.binary(16)
_MICROSECONDS_PER_DAY = 86_400_000_000
#: The 36-character text form's groups of hex digits (8-4-4-4-12): (from, to) in it and in the 32 digits.
_GROUPS = (((0, 8), (0, 8)), ((9, 13), (8, 12)), ((14, 18), (12, 16)), ((19, 23), (16, 20)), ((24, 36), (20, 32)))


def _storage(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``array`` as one chunk, an extension type's storage (uuid: 16-byte binary; json: string)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.storage if isinstance(array, pa.ExtensionArray) else array


def _uuids(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """uuids as ``fixed_size_binary(16)``, whether the driver gives them so (``arrow.uuid``) or as variable-size
    binary (its builds before 1.9: ``arrow.opaque``)."""
    raw = _storage(array)
    return raw if raw.type == _UUID_BYTES else raw.cast(_UUID_BYTES)


def uuid_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """16-byte uuids as PostgreSQL writes them in text (lower-case hex, 8-4-4-4-12); nulls stay null."""
    raw = _uuids(array)
    n = len(raw)
    if n == 0:
        return pa.array([], pa.string())
    digits = np.frombuffer(binascii.hexlify(memoryview(raw.buffers()[1])[16 * raw.offset:16 * (raw.offset + n)]),
                           dtype=np.uint8).reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for (start, end), (first, last) in _GROUPS:
        text[:, start:end] = digits[:, first:last]
    offsets = np.arange(0, 36 * n + 1, 36, dtype=np.int32)
    validity = pc.is_valid(raw).buffers()[1] if raw.null_count else None
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(text)],
                                 null_count=raw.null_count)


@dataclass(frozen=True)
class UserAttributes:
    """``user_attributes`` (read once per extraction connection), to join to events by user id."""

    user_ids: pa.Array  # fixed_size_binary(16)
    roles: pa.Array
    signed_up_at: pa.Array  # int64 microseconds since the epoch

    @classmethod
    def from_table(cls, table: pa.Table) -> UserAttributes:
        return cls(_uuids(table.column("user_id")), _storage(table.column("user_role")).cast(pa.string()),
                   _storage(table.column("signed_up_at")).cast(pa.int64()))

    def of(self, user_ids: pa.Array | pa.ChunkedArray,
           timestamps: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
        """Each event's user role and tenure: whole days from sign-up to the event, rounded down (the view's
        ``floor(extract(epoch FROM timestamp - signed_up_at) / 86400)``); null without a user or attributes."""
        found = pc.index_in(_uuids(user_ids), value_set=self.user_ids)
        role = self.roles.take(found)
        since = pc.subtract(_storage(timestamps).cast(pa.int64()), self.signed_up_at.take(found))
        days = np.floor_divide(pc.fill_null(since, 0).to_numpy(), _MICROSECONDS_PER_DAY).astype(np.int32)
        missing = pc.is_null(since).to_numpy(zero_copy_only=False) if since.null_count else None
        return role, pa.array(days, pa.int32(), mask=missing)


def pipeline_rows(batch: pa.RecordBatch, users: UserAttributes) -> pa.RecordBatch:
    """``batch`` (rows of ``pipeline_store_rows``) in :data:`PIPELINE_SCHEMA`."""
    columns: dict[str, pa.Array] = {}
    user_ids = _uuids(batch.column("user_id"))
    for field in PIPELINE_SCHEMA:
        if field.name in _UUIDS:
            columns[field.name] = uuid_text(user_ids if field.name == "user_id" else batch.column(field.name))
        elif field.name not in ("user_role", "user_tenure_days"):
            columns[field.name] = _storage(batch.column(field.name)).cast(field.type)
    columns["user_role"], columns["user_tenure_days"] = users.of(user_ids, batch.column("timestamp"))
    return pa.RecordBatch.from_arrays([columns[f.name] for f in PIPELINE_SCHEMA], schema=PIPELINE_SCHEMA)

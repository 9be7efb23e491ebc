"""Streaming events out of PostgreSQL into Arrow record batches (ADBC: binary COPY straight into Arrow), shaped as
the pipeline reads them (ingest/pipeline_rows.py)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import TypeVar

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from workdev_pipeline.ingest.pipeline_rows import UserAttributes, pipeline_rows
from workdev_pipeline.sql_files import query

T = TypeVar("T")

#: Target size of one streamed batch (the driver's hint); about 90,000 events of the demo mix. Validation reads each
#: event type's rows of a batch at once, so larger batches cost less per event; one is read ahead, so the memory
#: in flight is about what two of 16 MiB took (bench/README.md, "Batches of 32 MiB").
BATCH_BYTES = 32 * 1024 * 1024
#: The first batch's size: each next one twice the last, up to the stream's size. Nothing downstream starts before
#: the first batch is read, so a stream that began with a whole one (~0.2 s) left the cores half idle that long
#: (bench/README.md, "Batches that grow").
FIRST_BATCH_BYTES = 8 * 1024 * 1024
_BATCH_HINT = "adbc.postgresql.batch_size_hint_bytes"
#: Batches the driver reads ahead of the transformation.
READ_AHEAD_BATCHES = 1


class EventReader:
    """One Arrow-driver connection; each :meth:`stream` reads one statement in bounded batches, the first of
    ``first_batch_bytes``, each next one twice the last up to ``batch_bytes``. The statements read the store's
    columns without a join or a cast (``pipeline_store_rows``); ``user_attributes`` is read once, on the first."""

    def __init__(self, database_url: str, *, batch_bytes: int = BATCH_BYTES,
                 first_batch_bytes: int = FIRST_BATCH_BYTES) -> None:
        self._conn = adbc.connect(database_url, autocommit=True)
        self._batch_bytes = batch_bytes
        self._first_batch_bytes = min(first_batch_bytes, batch_bytes)
        self._users: UserAttributes | None = None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, statement: str, *, consumer: str, tx_low: int = 0, tx_high: int = 0,
               day_start: datetime | None = None, day_end: datetime | None = None,
               parallel: bool = True) -> Iterator[pa.RecordBatch]:
        """Batches of ``sql/queries/<statement>.sql`` in the pipeline's shape (``PIPELINE_SCHEMA``), its bounds
        bound as parameters beforehand; ``parallel=False``: no parallel workers (the server's setting otherwise)."""
        users = self.user_attributes()
        with self._conn.cursor() as cur:
            cur.execute(query("ingest/set_bounds"),
                        (str(tx_low), str(tx_high), (day_start or datetime.min).isoformat(),
                         (day_end or datetime.min).isoformat(), consumer, None if parallel else "0"))
            cur.fetchall()
        cur = self._conn.cursor()
        try:
            cur.adbc_statement.set_options(**{_BATCH_HINT: str(self._first_batch_bytes)})
            cur.execute(query(statement))
            yield from read_ahead((pipeline_rows(b, users) for b in self._growing(cur) if b.num_rows),
                                  depth=READ_AHEAD_BATCHES)
        finally:
            cur.close()

    def _growing(self, cur: adbc.Cursor) -> Iterator[pa.RecordBatch]:
        """The executed statement's batches, each asked for twice the size of the last (the driver reads its hint
        before each batch) up to the stream's batch size."""
        size = self._first_batch_bytes
        for batch in cur.fetch_record_batch():
            yield batch
            if size < self._batch_bytes:
                size = min(2 * size, self._batch_bytes)
                cur.adbc_statement.set_options(**{_BATCH_HINT: str(size)})

    def user_attributes(self) -> UserAttributes:
        """``user_attributes``, read on the first call."""
        if self._users is None:
            with self._conn.cursor() as cur:
                cur.execute(query("ingest/user_attributes"))
                self._users = UserAttributes.from_table(cur.fetch_arrow_table())
        return self._users


def read_ahead(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``batches``, the next ``depth`` produced by a thread while the caller works on the current one (the
    driver reads and decodes without the GIL, so extraction overlaps validation, enrichment and writing).
    An error in the producer is raised in the caller, and a caller that stops early stops the producer."""
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        """Hand ``item`` over unless the caller has stopped listening (then say so)."""
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(done)
        except BaseException as exc:
            put(exc)

    reader = threading.Thread(target=read, name="event-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()

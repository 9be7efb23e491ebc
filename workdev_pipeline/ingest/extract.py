"""Streaming events out of PostgreSQL into Arrow record batches (ADBC: binary COPY straight into Arrow)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa

from workdev_pipeline.sql_files import query

#: Target size of one streamed batch (the driver's hint); about 25,000 events of the demo mix.
BATCH_BYTES = 16 * 1024 * 1024


class EventReader:
    """One Arrow-driver connection; each :meth:`stream` reads one statement in bounded batches."""

    def __init__(self, database_url: str, *, batch_bytes: int = BATCH_BYTES) -> None:
        self._conn = adbc.connect(database_url, autocommit=True)
        self._batch_bytes = batch_bytes

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stream(self, statement: str, *, consumer: str, tx_low: int = 0, tx_high: int = 0,
               day_start: datetime | None = None, day_end: datetime | None = None) -> Iterator[pa.RecordBatch]:
        """Batches of ``sql/queries/<statement>.sql``, its bounds bound as parameters beforehand."""
        with self._conn.cursor() as cur:
            cur.execute(query("ingest/set_bounds"),
                        (str(tx_low), str(tx_high), (day_start or datetime.min).isoformat(),
                         (day_end or datetime.min).isoformat(), consumer))
            cur.fetchall()
        cur = self._conn.cursor()
        try:
            cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(self._batch_bytes)})
            cur.execute(query(statement))
            for batch in cur.fetch_record_batch():
                if batch.num_rows:
                    yield batch
        finally:
            cur.close()

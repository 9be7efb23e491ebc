"""When each event was ingested: the claim time of the sweep whose transaction-id range holds it. A day
rebuilt later restores these instants, so rebuilding gives the very same rows as the sweeps wrote."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import psycopg
import pyarrow as pa

from workdev_pipeline.sql_files import query

_STAMP = pa.timestamp("us", tz="UTC")


class IngestTimes:
    """Maps a batch's ``tx_id`` column to the ``started_at`` of the finished sweep covering each id."""

    def __init__(self, conn: psycopg.Connection, consumer: str) -> None:
        rows = conn.execute(query("ingest/sweep_times"), {"consumer": consumer}).fetchall()
        self._low = np.array([r[0] for r in rows], dtype=np.int64)
        self._high = np.array([r[1] for r in rows], dtype=np.int64)
        self._at = np.array([int(r[2].timestamp() * 1_000_000) for r in rows], dtype=np.int64)
        self._fallback = int(datetime.now(UTC).timestamp() * 1_000_000)

    def __call__(self, batch: pa.RecordBatch) -> pa.Array:
        tx = batch.column("tx_id").to_numpy(zero_copy_only=False).astype(np.int64)
        at = np.full(len(tx), self._fallback, dtype=np.int64)  # no sweep covers it (not expected): now
        if len(self._low):
            idx = np.searchsorted(self._low, tx, side="right") - 1
            covered = (idx >= 0) & (tx < self._high[np.clip(idx, 0, None)])
            at[covered] = self._at[idx[covered]]
        return pa.array(at, pa.int64()).cast(_STAMP)

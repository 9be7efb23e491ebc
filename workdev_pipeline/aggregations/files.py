"""The aggregations in the local warehouse: one Parquet file per period,
``<root>/event_aggregations/aggregation_type=<hourly|daily|weekly>/<period>.parquet`` (``2026-11-23T14``,
``2026-11-23``; a week by its Monday).

A period's rebuild replaces exactly its file: the new file is written under a temporary name in the same
directory (``.<period>.parquet.tmp-<token>``, which no ``*.parquet`` glob matches), fsynced, then renamed over
the old one (``os.replace``, atomic). A period without events has no file (a rebuild that finds none removes
it). Read them all with DuckDB::

    read_parquet('<root>/event_aggregations/*/*.parquet', hive_partitioning = true)
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from workdev_pipeline.aggregations.periods import Granularity
from workdev_pipeline.ingest.local_store import fsync_dir

TABLE = "event_aggregations"

#: The columns of a period's file (``aggregation_type`` is the directory's hive key, as ``event_date`` is for
#: the events). The same columns as the PostgreSQL table ``event_aggregations``.
FILE_SCHEMA = pa.schema([
    pa.field("period_start", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("period_end", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_category", pa.string(), nullable=False),
    pa.field("total_events", pa.int64(), nullable=False),
    pa.field("unique_users", pa.int64(), nullable=False),
    pa.field("unique_sessions", pa.int64(), nullable=False),
    pa.field("amount_sum", pa.decimal128(38, 9)),
    pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
])

#: The rows of a range of periods as one table, as the remote engines' ``event_aggregations`` hold them: the
#: aggregation type as a column, then ``FILE_SCHEMA``.
AGGREGATION_SCHEMA = pa.schema([pa.field("aggregation_type", pa.string(), nullable=False), *FILE_SCHEMA])


class AggregateFiles:
    """The ``event_aggregations`` table of the local warehouse."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.table_dir = self.root / TABLE

    def type_dir(self, granularity: Granularity) -> Path:
        return self.table_dir / f"aggregation_type={granularity.name}"

    def path(self, granularity: Granularity, period_start) -> Path:
        return self.type_dir(granularity) / f"{granularity.period_label(period_start)}.parquet"

    def glob(self) -> str:
        """Every file of the table (DuckDB / Hive path)."""
        return str(self.table_dir / "aggregation_type=*" / "*.parquet")

    def files(self, granularity: Granularity) -> list[Path]:
        return sorted(self.type_dir(granularity).glob("*.parquet"))

    def stage(self, granularity: Granularity, period_start, table: pa.Table) -> Path:
        """Write ``table`` (one period's rows, ``FILE_SCHEMA``) under a temporary name beside its final place."""
        final = self.path(granularity, period_start)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._drop_stale_temps(final)
        temp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:12]}")
        pq.write_table(table.cast(FILE_SCHEMA), temp, compression="zstd")
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        return temp

    def publish(self, granularity: Granularity, staged: dict[object, Path | None]) -> tuple[int, int]:
        """Put each period's staged file in place (``None``: the period has no rows, remove its file).
        Returns (files written, files removed)."""
        written = removed = 0
        for period_start, temp in staged.items():
            final = self.path(granularity, period_start)
            if temp is None:
                if final.exists():
                    final.unlink()
                    removed += 1
            else:
                os.replace(temp, final)
                written += 1
        if staged and self.type_dir(granularity).is_dir():
            fsync_dir(self.type_dir(granularity))
        return written, removed

    def discard(self, staged: dict[object, Path | None]) -> None:
        for temp in staged.values():
            if temp is not None:
                temp.unlink(missing_ok=True)

    @staticmethod
    def _drop_stale_temps(final: Path, older_than_seconds: float = 3600.0) -> None:
        """Temporary files a killed run left for this period (a running one's are younger)."""
        for temp in final.parent.glob(f".{final.name}.tmp-*"):
            try:
                if time.time() - temp.stat().st_mtime > older_than_seconds:
                    temp.unlink()
            except FileNotFoundError:
                pass

    def read(self, granularity: Granularity, period_start) -> pa.Table | None:
        path = self.path(granularity, period_start)
        return pq.read_table(path) if path.exists() else None

    def read_range(self, granularity: Granularity, start: datetime, end: datetime) -> pa.Table:
        """Every row of the periods in [start, end) (``AGGREGATION_SCHEMA``, in period order); periods without a
        file (no events) have no rows."""
        tables = []
        for period in granularity.periods(start, end):
            try:  # a file is replaced atomically, or removed when its period lost every event
                tables.append(pq.read_table(self.path(granularity, period), schema=FILE_SCHEMA))
            except FileNotFoundError:
                continue
        rows = pa.concat_tables(tables) if tables else pa.Table.from_batches([], FILE_SCHEMA)
        kind = pa.array([granularity.name] * rows.num_rows, pa.string())
        return pa.Table.from_arrays([kind, *rows.columns], schema=AGGREGATION_SCHEMA)

"""Rebuilding aggregation periods: read the warehouse's events with DuckDB, write ``event_aggregations`` in
PostgreSQL and the warehouse's per-period Parquet files. Plain Python (no Dagster): the assets call it.

The source is the events as loaded into the warehouse (the day-partitioned Parquet files): exactly the
processed events -- validated, not dead-lettered -- which is what the aggregates must count (PostgreSQL holds
pending and failed events too, and would need the dead letter anti-joined), read at DuckDB's speed and without
loading the event store that producers write to. ``bench/bench_aggregations.py``, one day of 1,000,000 events:
the 24 hours of the day in 0.8 s, the day in 0.6 s (reads, PostgreSQL and files included), where PostgreSQL's
GROUP BY takes 2.2 s for the hours alone (LIMITS.md: 150-280 ms against 730-950 ms without the distinct
sessions and amounts).

A rebuild of [start, end) is idempotent: per chunk of periods, one PostgreSQL transaction deletes the periods'
rows and copies the new ones in (serialised per aggregation type by an advisory lock), and each period's file
is replaced whole (written under a temporary name first, renamed over the old one under the same lock, just
before the commit). Unique users and sessions are exact (``count(DISTINCT ...)`` over the period's events,
never sums of finer periods).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.aggregations.files import FILE_SCHEMA, AggregateFiles
from workdev_pipeline.aggregations.periods import Granularity, days_covering, utc
from workdev_pipeline.ingest.local_store import LocalEventFiles
from workdev_pipeline.sql_files import query

log = logging.getLogger(__name__)

#: A day's files can vanish under a reader when the warehouse rebuilds that day (it swaps the directory):
#: the read is retried with the new file list.
READ_ATTEMPTS = 3


@dataclass
class AggregationOutcome:
    """What one rebuild did (it becomes the materializations' metadata)."""

    aggregation_type: str
    range_start: datetime
    range_end: datetime
    periods: int = 0
    periods_with_events: int = 0
    rows_written: int = 0
    events: int = 0
    source_files: int = 0
    files_written: int = 0
    files_removed: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    read_seconds: float = 0.0
    postgres_seconds: float = 0.0
    parquet_seconds: float = 0.0
    #: (period_start, rows, events) of every period with events, in order
    per_period: list[tuple[datetime, int, int]] = field(default_factory=list)
    #: the busiest rows (by events) of the range, for the preview
    top_rows: list[dict[str, Any]] = field(default_factory=list)


def amount_paths(conn: psycopg.Connection) -> dict[str, str]:
    """{event_type: JSON path of its amount field} from ``event_schemas`` (synced from the catalog)."""
    rows = conn.execute(query("aggregations/amount_fields")).fetchall()
    return {event_type: json_path(field_name) for event_type, field_name in rows}


def json_path(key: str) -> str:
    """The JSON path of a top-level key, quoted (DuckDB's ``$."key"``)."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Aggregator:
    """Rebuilds periods of one warehouse (its events' files, its aggregation files) into PostgreSQL too."""

    def __init__(self, events: LocalEventFiles, aggregates: AggregateFiles | None = None) -> None:
        self.events = events
        self.aggregates = aggregates or AggregateFiles(events.root)

    # -- reading ---------------------------------------------------------------------------------------
    def compute(self, granularity: Granularity, start: datetime, end: datetime,
                paths: dict[str, str]) -> tuple[pa.Table, int]:
        """The aggregate rows of the periods in [start, end) (``ROW_SCHEMA``), and how many event files
        were read."""
        start, end = utc(start), utc(end)
        for attempt in range(1, READ_ATTEMPTS + 1):
            files = [str(p) for day in days_covering(start, end) for p in self.events.day_files(day)]
            if not files:
                return _empty_rows(), 0
            try:
                with _duckdb() as con:
                    table = con.sql(query("aggregations/aggregate_events"), params={
                        "unit": granularity.unit, "step": granularity.step, "files": files,
                        "range_start": start, "range_end": end,
                        "amount_types": list(paths), "amount_paths": list(paths.values()),
                    }).to_arrow_table()
                return _in_schema(table), len(files)
            except duckdb.IOException as exc:  # a day swapped by a warehouse rebuild while we read it
                if attempt == READ_ATTEMPTS or all(Path(f).exists() for f in files):
                    raise
                log.warning("event files changed while reading (%s); reading again", exc)
        raise AssertionError("unreachable")

    # -- rebuilding ------------------------------------------------------------------------------------
    def rebuild(self, conn: psycopg.Connection, granularity: Granularity, start: datetime, end: datetime,
                *, computed_at: datetime | None = None) -> AggregationOutcome:
        """Recompute every period of [start, end) and replace its rows in PostgreSQL and its file.
        ``conn`` is in autocommit mode (each chunk is its own transaction)."""
        started = time.perf_counter()
        start, end = utc(start), utc(end)
        computed_at = computed_at or datetime.now(UTC)
        outcome = AggregationOutcome(granularity.name, start, end)
        paths = amount_paths(conn)
        top: list[dict[str, Any]] = []
        for chunk_start, chunk_end in granularity.chunks(start, end):
            t0 = time.perf_counter()
            rows, files_read = self.compute(granularity, chunk_start, chunk_end, paths)
            rows = rows.append_column("computed_at", pa.array([computed_at] * rows.num_rows,
                                                              pa.timestamp("us", tz="UTC")))
            outcome.read_seconds += time.perf_counter() - t0
            outcome.source_files += files_read
            self._replace(conn, granularity, chunk_start, chunk_end, rows, outcome)
            top = sorted(top + _top_rows(rows, 20), key=lambda r: -r["total_events"])[:20]
        outcome.top_rows = top
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _replace(self, conn: psycopg.Connection, granularity: Granularity, start: datetime, end: datetime,
                 rows: pa.Table, outcome: AggregationOutcome) -> None:
        periods = granularity.periods(start, end)
        t0 = time.perf_counter()
        staged: dict[datetime, Path | None] = {}
        try:
            period_column = rows.column("period_start")
            for period in periods:
                part = rows.filter(pc.equal(period_column, pa.scalar(period, pa.timestamp("us", tz="UTC"))))
                if part.num_rows:
                    staged[period] = self.aggregates.stage(granularity, period, part)
                    outcome.bytes_written += staged[period].stat().st_size
                    outcome.per_period.append((period, part.num_rows, pc.sum(part.column("total_events")).as_py()))
                else:
                    staged[period] = None
            outcome.parquet_seconds += time.perf_counter() - t0

            t0 = time.perf_counter()
            with conn.transaction():
                params = {"aggregation_type": granularity.name, "range_start": start, "range_end": end}
                conn.execute(query("aggregations/lock_type"), params)
                conn.execute(query("aggregations/delete_periods"), params)
                with conn.cursor() as cur, cur.copy(query("aggregations/copy_rows")) as copy:
                    for row in _pg_rows(granularity, rows):
                        copy.write_row(row)
                outcome.postgres_seconds += time.perf_counter() - t0
                # the files go in under the same lock, just before the commit: concurrent rebuilds of a period
                # leave both stores with the same (the last) rebuild; a crash in between is repaired by a rerun
                t0 = time.perf_counter()
                written, removed = self.aggregates.publish(granularity, staged)
                outcome.parquet_seconds += time.perf_counter() - t0
        except BaseException:
            self.aggregates.discard(staged)
            raise

        outcome.files_written += written
        outcome.files_removed += removed
        outcome.periods += len(periods)
        outcome.periods_with_events += sum(1 for p in staged.values() if p is not None)
        outcome.rows_written += rows.num_rows
        outcome.events += pc.sum(rows.column("total_events")).as_py() or 0


@contextmanager
def _duckdb() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # date_trunc of a TIMESTAMPTZ works in the session's zone
        yield con
    finally:
        con.close()


#: What a query returns: ``FILE_SCHEMA`` less ``computed_at`` (stamped once per rebuild).
ROW_SCHEMA = FILE_SCHEMA.remove(FILE_SCHEMA.get_field_index("computed_at"))


def _empty_rows() -> pa.Table:
    return pa.Table.from_batches([], ROW_SCHEMA)  # (Schema.empty_table() would import pandas: 0.4 s)


def _in_schema(table: pa.Table) -> pa.Table:
    """DuckDB's rows in ``ROW_SCHEMA``."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) for f in ROW_SCHEMA], schema=ROW_SCHEMA)


def _pg_rows(granularity: Granularity, rows: pa.Table) -> Iterator[tuple]:
    names = ("period_start", "period_end", "event_type", "event_category", "total_events", "unique_users",
             "unique_sessions", "amount_sum", "computed_at")
    columns = [rows.column(n).to_pylist() for n in names]
    for values in zip(*columns, strict=True):
        yield (granularity.name, *values)


def _top_rows(rows: pa.Table, n: int) -> list[dict[str, Any]]:
    if not rows.num_rows:
        return []
    order = pc.sort_indices(rows, sort_keys=[("total_events", "descending"), ("period_start", "ascending")])
    return rows.take(order[:n]).drop_columns(["computed_at"]).to_pylist()

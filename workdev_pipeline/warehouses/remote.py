"""What the ingestion engine needs of a remote warehouse table (BigQuery, Redshift).

A remote engine keeps its own consumer (watermark, dead letter, sync status) and a local mirror of its day
files: every sweep, rebuild, retention or erasure writes Parquet files exactly as for the local warehouse
(``WAREHOUSE_SCHEMA``), then hands them to the engine's table:

* after a sweep's files are published, :meth:`RemoteEventTable.merge_files` for each day it touched (MERGE on
  event_id: a sweep redone after a crash between the load and the bookkeeping loads the same rows again and
  leaves one copy of each);
* after a day is rebuilt or rewritten, :meth:`RemoteEventTable.replace_day` with the day's files (delete the
  day + insert, atomically), and with no files when the day is removed.

Both are idempotent, so the engine can retry or redo them freely; ``load_id`` is deterministic for a given
operation (``sweep-<id>-<day>``, ``rebuild-<day>``...) so that engines with job ids (BigQuery) reuse them.

The aggregations reach an engine's ``event_aggregations`` through :class:`RemoteAggregationTable`: a range of
periods of one aggregation type replaced whole (:meth:`RemoteAggregationTable.replace_aggregations`) with the
rows the local warehouse's aggregation files hold for it (``workdev_pipeline.aggregations.delivery``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc


class RemoteEventTable(Protocol):
    """``platform_events`` in one remote engine, partitioned by the UTC day of ``timestamp``."""

    #: The engine's name (``bigquery``, ``redshift``): tags, metadata, logs.
    engine: str
    #: Exceptions that mean "try again later" (network, service unavailable); the engine retries them with
    #: backoff and dead-letters the sweep's events after its retries.
    transient_errors: tuple[type[BaseException], ...]

    def ensure_table(self) -> None:
        """Create the dataset/schema and table when missing; add columns the schema gained (never drops)."""
        ...

    def merge_files(self, day: date, paths: Sequence[Path], load_id: str) -> int:
        """Upsert the rows of these Parquet files (all of ``day``) by event_id; returns the rows loaded."""
        ...

    def replace_day(self, day: date, paths: Sequence[Path], load_id: str) -> int:
        """Make ``day`` hold exactly the rows of these files (none: the day is emptied), atomically; returns
        the rows loaded. Touches no other day."""
        ...

    def day_counts(self, day: date) -> dict[str, int]:
        """Rows held for ``day``, by event_type."""
        ...

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        """Event ids held more than once on ``day`` (with how often)."""
        ...

    def event_ids(self, day: date) -> set[str]:
        """Every event id held for ``day`` (cross-engine parity)."""
        ...

    def user_row_count(self, user_id: str) -> int:
        """Rows held for ``user_id`` over every day (erasure's no-trace check)."""
        ...

    def close(self) -> None:
        """Release clients and connections."""
        ...


class RemoteAggregationTable(Protocol):
    """``event_aggregations`` in one remote engine: the columns of ``AGGREGATION_SCHEMA``
    (``workdev_pipeline.aggregations.files``), one row per aggregation type, period, event type and category."""

    engine: str
    transient_errors: tuple[type[BaseException], ...]

    def ensure_table(self) -> None:
        """Create the table when missing."""
        ...

    def replace_aggregations(self, aggregation_type: str, start: datetime, end: datetime, rows: pa.Table,
                             load_id: str) -> int:
        """Make the ``aggregation_type`` periods starting in [start, end) hold exactly ``rows``
        (``AGGREGATION_SCHEMA``, all of that type and range; none: the range is emptied), atomically; returns the
        rows loaded. Touches no other period or type; idempotent."""
        ...

    def aggregation_rows(self, aggregation_type: str, start: datetime, end: datetime) -> list[tuple]:
        """(period_start, event_type, event_category, total_events, unique_users, unique_sessions, amount_sum) of
        the periods starting in [start, end), sorted (checks: the engine against PostgreSQL)."""
        ...

    def close(self) -> None:
        ...


def check_aggregation_rows(rows: pa.Table, aggregation_type: str, start: datetime, end: datetime) -> None:
    """Raise ValueError unless every row is of ``aggregation_type`` with a period starting in [start, end) (a
    range replace would otherwise drop rows outside the range, or leave them duplicated)."""
    if start >= end:
        raise ValueError(f"empty aggregation range [{start.isoformat()}, {end.isoformat()})")
    if not rows.num_rows:
        return
    kinds = set(pc.unique(rows.column("aggregation_type")).to_pylist())
    if kinds != {aggregation_type}:
        raise ValueError(f"rows of aggregation types {sorted(map(str, kinds))} given to replace {aggregation_type} "
                         "periods")
    bounds = pc.min_max(rows.column("period_start")).as_py()
    if bounds["min"] < start or bounds["max"] >= end:
        raise ValueError(f"rows of periods {bounds['min'].isoformat()} .. {bounds['max'].isoformat()} outside "
                         f"[{start.isoformat()}, {end.isoformat()})")

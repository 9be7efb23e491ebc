"""What a remote warehouse engine's tables do (BigQuery, Redshift).

**Events.** An engine's ``platform_events`` is fed from the lake (``lake/platform_events``, a Delta table) by
:mod:`workdev_pipeline.lake.delivery`, never from PostgreSQL and never from a copy on local disk:

* files the lake committed since the engine's last delivery reach their day by
  :meth:`RemoteEventTable.merge_files` (MERGE on event_id: a delivery redone after a crash between the load and
  its bookkeeping loads the same rows again and leaves one copy of each);
* a day whose files the lake replaced or deleted (a rebuild, retention, an erasure) by
  :meth:`RemoteEventTable.replace_day` with every file the lake's day holds now (delete the day + insert,
  atomically; no files: the day is emptied).

A *source* is the lake's data file: a local :class:`~pathlib.Path` when the lake is on this machine's file system,
otherwise its URI (``gs://...``, ``s3://...``), given only to an engine listing the scheme in ``uri_schemes``
(BigQuery loads ``gs://`` objects itself); the delivery copies other files to a temporary directory first. The
files hold the lake's columns in ``WAREHOUSE_SCHEMA`` order without ``event_date`` (the partition directory), the
JSON columns as plain strings.

Both loads are idempotent, so the engine can retry or redo them freely; ``load_id`` is deterministic for a given
operation (``lake-<from>-<to>-<day>``, ``day-<version>-<day>``...) so that engines with job ids (BigQuery) reuse
them.

**Governance in place** (:mod:`workdev_pipeline.governance.engines`): retention and erasure run as statements in
the engine -- a DELETE bounded by the days holding expired events and the policy's cut-off per event type; the
erased users' events replaced by the lake's current (anonymised) rows of the same event ids -- and the checks
(counts, duplicates, parity, traces of erased values) query the engine itself.

The aggregations reach an engine's ``event_aggregations`` through :class:`RemoteAggregationTable`: a range of
periods of one aggregation type replaced whole (:meth:`RemoteAggregationTable.replace_aggregations`) with the
rows the lake's aggregation tables hold for it (``workdev_pipeline.aggregations.delivery``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

#: A data file to load: a local path, or an object-store URI (only for an engine listing its scheme).
Source = Path | str


class RemoteEventTable(Protocol):
    """``platform_events`` in one remote engine, partitioned by the UTC day of ``timestamp``."""

    #: The engine's name (``bigquery``, ``redshift``): tags, metadata, logs, its lock and its delivery record.
    engine: str
    #: Exceptions that mean "try again later" (network, service unavailable); loads are retried with backoff.
    transient_errors: tuple[type[BaseException], ...]
    #: URI schemes the engine loads straight from object storage (``("gs://",)``); others arrive as local paths.
    uri_schemes: tuple[str, ...]
    #: Loads (days) a delivery may run at once on this object (1: one at a time).
    parallel_loads: int

    def ensure_table(self) -> None:
        """Create the dataset/schema and table when missing; add columns the schema gained (never drops)."""
        ...

    def merge_files(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        """Upsert the rows of these Parquet files (all of ``day``) by event_id; returns the rows loaded."""
        ...

    def replace_day(self, day: date, paths: Sequence[Source], load_id: str) -> int:
        """Make ``day`` hold exactly the rows of these files (none: the day is emptied), atomically; returns
        the rows loaded. Touches no other day."""
        ...

    def fill_days(self, days: Mapping[date, Sequence[Source]], load_id: str) -> dict[date, int]:
        """Load the files of days the table holds no row of (the caller knows it: a delivery from scratch, under the
        engine's lock): what :meth:`replace_day` of each does there, as cheaply as the engine can (BigQuery: one
        load job and one INSERT for them all). Returns the rows loaded per day."""
        ...

    def days(self) -> set[date]:
        """The days holding at least one row."""
        ...

    def day_counts(self, day: date) -> dict[str, int]:
        """Rows held for ``day``, by event_type."""
        ...

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        """Event ids held more than once on ``day`` (with how often)."""
        ...

    def event_ids(self, day: date) -> set[str]:
        """Every event id held for ``day`` (parity with the lake)."""
        ...

    def user_row_count(self, user_id: str) -> int:
        """Rows held for ``user_id`` over every day (erasure's no-trace check)."""
        ...

    def amounts(self, day: date) -> dict[str, tuple[Decimal, int]]:
        """Per event type of ``day``: (exact sum of the typed ``amount``, events whose amount did not fit --
        ``amount_overflow``), for the types having either (parity with the lake's, ``amount_totals``)."""
        ...

    # -- governance in place ---------------------------------------------------------------------------------
    def expired_by_day(self, cutoffs: Mapping[str, datetime], before: datetime) -> list[tuple[date, str, int, int]]:
        """(day, event_category, expired rows, rows) of the days before ``before`` (a day boundary): a row has
        expired when its timestamp is older than its event type's cut-off (a type without one never expires)."""
        ...

    def delete_expired(self, cutoffs: Mapping[str, datetime], start: datetime, end: datetime) -> int:
        """Delete the expired rows with a timestamp in [start, end), in one statement; returns the rows deleted
        (-1 when the engine does not say)."""
        ...

    def user_rows(self, user_id: str) -> list[tuple[str, datetime, str | None]]:
        """(event_id, timestamp (aware, UTC), event_type) of every row held for ``user_id``."""
        ...

    def held_event_ids(self, event_ids: Sequence[str], start: datetime, end: datetime) -> list[str]:
        """The rows among ``event_ids`` with a timestamp in [start, end) (an id once per row)."""
        ...

    def refresh_events(self, event_ids: Sequence[str], start: datetime, end: datetime, paths: Sequence[Source],
                       load_id: str) -> int:
        """Make the rows of ``event_ids`` with a timestamp in [start, end) exactly the rows of these files (those
        ids' current rows; none: they are deleted), atomically; other rows untouched. Returns the rows loaded."""
        ...

    def payloads(self) -> list[tuple[str, str | None, str | None, str | None, str | None]]:
        """(event_type, user_id, session_id, event_data, metadata) of every row, JSON as text."""
        ...

    def ip_user_agents(self) -> list[tuple[str | None, str | None, int]]:
        """(metadata's ip_address, user_agent, rows) of the rows without a user whose metadata has an IP."""
        ...

    def close(self) -> None:
        """Release clients and connections."""
        ...


class RemoteAggregationTable(Protocol):
    """``event_aggregations`` in one remote engine: the columns of ``AGGREGATION_SCHEMA``
    (``workdev_pipeline.lake.aggregations``), one row per aggregation type, period, event type and category."""

    engine: str
    transient_errors: tuple[type[BaseException], ...]

    def ensure_table(self) -> None:
        """Create the table when missing; add the columns ``AGGREGATION_SCHEMA`` gained (never drops)."""
        ...

    def replace_aggregations(self, aggregation_type: str, start: datetime, end: datetime, rows: pa.Table,
                             load_id: str) -> int:
        """Make the ``aggregation_type`` periods starting in [start, end) hold exactly ``rows``
        (``AGGREGATION_SCHEMA``, all of that type and range; none: the range is emptied), atomically; returns the
        rows loaded. Touches no other period or type; idempotent."""
        ...

    def aggregation_rows(self, aggregation_type: str, start: datetime, end: datetime) -> list[tuple]:
        """(period_start, event_type, event_category, total_events, unique_users, unique_sessions, amount_sum,
        amount_overflow) of the periods starting in [start, end), sorted (checks: the engine against PostgreSQL)."""
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

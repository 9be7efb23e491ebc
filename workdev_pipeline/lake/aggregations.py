"""``lake/event_aggregations``: the hourly, daily and weekly aggregations in one Delta table beside the events,
partitioned by ``aggregation_type`` (``AGGREGATION_SCHEMA``: the columns of PostgreSQL's ``event_aggregations``).

A rebuild of a range of periods is **one commit**: a predicate overwrite of exactly
``aggregation_type = '<type>' AND period_start >= '<start>' AND period_start < '<end>'`` (a range without rows is
emptied). Readers see the range before or after, never half of it; other types' files are never touched, and rows
of other periods of the type that share a file with the range are carried over unchanged. Nothing here is personal
(counts per event type), so the Delta log keeps delta-rs's default column statistics.

Readers: :meth:`AggregationLake.read_range` (one type and range, as the remote engines receive it),
:meth:`AggregationLake.register` / :meth:`AggregationLake.query` (DuckDB over a consistent version), or any Delta
reader at :attr:`AggregationLake.uri` (DuckDB's ``delta_scan``, Polars, Spark, Trino).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import WriterProperties, write_deltalake
from deltalake.fs import DeltaStorageHandler

from workdev_pipeline import sql_files
from workdev_pipeline.aggregations.amounts import LAKE_DECIMAL
from workdev_pipeline.aggregations.periods import Granularity, utc
from workdev_pipeline.lake.table import LakeTable
from workdev_pipeline.warehouses.remote import check_aggregation_rows

if TYPE_CHECKING:  # DuckDB is imported when a query runs, not when the code location loads
    import duckdb

TABLE = "event_aggregations"
PARTITION_COLUMN = "aggregation_type"

#: One row per aggregation type, period, event type and category: the columns of PostgreSQL's and the remote
#: engines' ``event_aggregations``. ``amount_sum`` is exact when it fits DECIMAL(38, 9), else NULL with
#: ``amount_overflow`` true (PostgreSQL holds the exact sum; ``workdev_pipeline/aggregations/amounts.py``).
#: ``amount_overflow`` came last, later: a table created before it gains it (``LakeTable.ensure``), NULL in the rows
#: it held -- computed before amounts were exact: rebuild those periods.
AGGREGATION_SCHEMA = pa.schema([
    pa.field("aggregation_type", pa.string(), nullable=False),
    pa.field("period_start", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("period_end", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_category", pa.string(), nullable=False),
    pa.field("total_events", pa.int64(), nullable=False),
    pa.field("unique_users", pa.int64(), nullable=False),
    pa.field("unique_sessions", pa.int64(), nullable=False),
    pa.field("amount_sum", LAKE_DECIMAL),
    pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("amount_overflow", pa.bool_()),
])
TABLE_CONFIGURATION = {"delta.checkpointInterval": "100"}
WRITER_PROPERTIES = WriterProperties(compression="ZSTD", compression_level=1)


@dataclass
class AggregationCommit:
    """One replace of a range: the commit's version and what it added and removed."""

    version: int
    rows: int = 0
    files_added: int = 0
    files_removed: int = 0
    bytes_written: int = 0
    #: the aggregation types whose files the commit added or removed
    partitions: set[str] = field(default_factory=set)
    predicate: str = ""


def range_predicate(granularity: Granularity, start: datetime, end: datetime) -> str:
    """The Delta predicate of the ``granularity`` periods starting in [start, end) (no data values: dates only)."""
    start, end = utc(start), utc(end)
    return (f"{PARTITION_COLUMN} = '{granularity.name}' AND period_start >= '{start.isoformat()}' "
            f"AND period_start < '{end.isoformat()}'")


class AggregationLake(LakeTable):
    """The aggregations table of the lake at ``location``."""

    NAME = TABLE
    SCHEMA = AGGREGATION_SCHEMA
    PARTITION_COLUMN = PARTITION_COLUMN
    CONFIGURATION = TABLE_CONFIGURATION

    # -- writes ------------------------------------------------------------------------------------
    def replace_periods(self, granularity: Granularity, start: datetime, end: datetime,
                        rows: pa.Table) -> AggregationCommit:
        """Make the ``granularity`` periods starting in [start, end) hold exactly ``rows`` in one commit (a
        predicate overwrite; no rows: the range is emptied). ``rows``: ``AGGREGATION_SCHEMA``, or its columns
        without ``aggregation_type``; a row of another type or of a period outside the range raises ValueError."""
        start, end = utc(start), utc(end)
        rows = self._in_schema(granularity, rows)
        check_aggregation_rows(rows, granularity.name, start, end)
        for period in pc.unique(rows.column("period_start")).to_pylist():
            if granularity.floor(period) != period:
                raise ValueError(f"a row's period_start {period.isoformat()} does not start a {granularity.name} "
                                 "period")
        predicate = range_predicate(granularity, start, end)
        table = self.ensure()
        write_deltalake(table, rows, mode="overwrite", predicate=predicate, writer_properties=WRITER_PROPERTIES)
        commit = self._commit(table.version())
        commit.rows, commit.predicate = rows.num_rows, predicate
        return commit

    def compact(self, retention_hours: float = 168.0) -> tuple[int, int, int]:
        """The small files of range rewrites (one per hourly pass) compacted, replaced files older than
        ``retention_hours`` vacuumed: (files removed, files added, files vacuumed)."""
        table = self.table()
        if table is None:
            return 0, 0, 0
        metrics = table.optimize.compact(writer_properties=WRITER_PROPERTIES)
        vacuumed = self.vacuum(retention_hours)
        return int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0)), len(vacuumed)

    @staticmethod
    def _in_schema(granularity: Granularity, rows: pa.Table) -> pa.Table:
        if PARTITION_COLUMN not in rows.column_names:
            kind = pa.array([granularity.name] * rows.num_rows, pa.string())
            rows = rows.add_column(0, PARTITION_COLUMN, kind)
        return pa.Table.from_arrays([rows.column(f.name).cast(f.type) for f in AGGREGATION_SCHEMA],
                                    schema=AGGREGATION_SCHEMA)

    def _commit(self, version: int) -> AggregationCommit:
        """What commit ``version`` added and removed, from its log entry."""
        commit = AggregationCommit(version)
        fs = pafs.PyFileSystem(DeltaStorageHandler(self.uri, options=self.storage_options))
        with fs.open_input_stream(f"_delta_log/{version:020d}.json") as stream:
            text = stream.read().decode()
        for line in filter(str.strip, text.splitlines()):
            action = json.loads(line)
            for kind in ("add", "remove"):
                if kind in action:
                    entry = action[kind]
                    commit.partitions.add((entry.get("partitionValues") or {}).get(PARTITION_COLUMN))
                    if kind == "add":
                        commit.files_added += 1
                        commit.bytes_written += int(entry.get("size") or 0)
                    else:
                        commit.files_removed += 1
        return commit

    # -- reads -------------------------------------------------------------------------------------
    def dataset(self, granularity: Granularity | None = None, version: int | None = None) -> ds.Dataset:
        """One version's rows (of ``granularity`` only) as a pyarrow dataset."""
        table = self.table(version)
        if table is None:
            return ds.dataset(pa.Table.from_batches([], AGGREGATION_SCHEMA))
        predicate = None if granularity is None else [(PARTITION_COLUMN, "=", granularity.name)]
        return table.to_pyarrow_dataset(file_pruning_predicate=predicate)

    def read_range(self, granularity: Granularity, start: datetime, end: datetime) -> pa.Table:
        """Every row of the ``granularity`` periods starting in [start, end) (``AGGREGATION_SCHEMA``, in period,
        event type and category order); periods without events have no rows."""
        start, end = utc(start), utc(end)
        table = self.table()
        if table is None:
            return pa.Table.from_batches([], AGGREGATION_SCHEMA)
        # files pruned by partition and period_start statistics, then the rows filtered exactly
        dataset = table.to_pyarrow_dataset(file_pruning_predicate=range_predicate(granularity, start, end))
        stamp = pa.timestamp("us", tz="UTC")
        rows = dataset.to_table(filter=(pc.field(PARTITION_COLUMN) == granularity.name)
                                & (pc.field("period_start") >= pa.scalar(start, stamp))
                                & (pc.field("period_start") < pa.scalar(end, stamp)))
        rows = _with_schema(rows)
        return rows.sort_by([("period_start", "ascending"), ("event_type", "ascending"),
                             ("event_category", "ascending")])

    def register(self, con: duckdb.DuckDBPyConnection, name: str = TABLE, version: int | None = None,
                 granularity: Granularity | None = None) -> None:
        """Make ``name`` a DuckDB view of one version of the table (the latest by default; only the files of
        ``granularity`` when given)."""
        con.register(name, self.dataset(granularity, version))

    def query(self, sql: str, parameters: Sequence | Mapping[str, object] | None = None, name: str = TABLE,
              granularity: Granularity | None = None) -> list[tuple]:
        """DuckDB ``sql`` where ``name`` is the table's latest version (of ``granularity`` only when given; UTC
        session time zone); ``parameters`` positional (``?``) or named (``$name``)."""
        import duckdb

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            self.register(con, name, granularity=granularity)
            return con.execute(sql, parameters if isinstance(parameters, Mapping) else list(parameters or [])) \
                .fetchall()
        finally:
            con.close()

    def type_counts(self, granularity: Granularity, periods: Sequence[datetime]) -> dict[datetime, dict[str, int]]:
        """{period_start: {event_type: events}} of the ``granularity`` periods starting at ``periods`` (one version;
        a period without rows is absent)."""
        counts: dict[datetime, dict[str, int]] = {}
        rows = self.query(sql_files.query("aggregations/type_counts"), {
            "aggregation_type": granularity.name, "periods": sorted({utc(p) for p in periods})},
            granularity=granularity)
        for period_start, event_type, events in rows:
            counts.setdefault(utc(period_start), {})[event_type] = int(events)
        return counts


def _with_schema(rows: pa.Table) -> pa.Table:
    """Rows read from the table in ``AGGREGATION_SCHEMA``; a column a table not yet evolved lacks is NULL."""
    return pa.Table.from_arrays([rows.column(f.name).cast(f.type) if f.name in rows.column_names
                                 else pa.nulls(rows.num_rows, f.type) for f in AGGREGATION_SCHEMA],
                                schema=AGGREGATION_SCHEMA)

"""``lake/platform_events``: the enriched events in one Delta table, partitioned by ``event_date`` (the UTC day of
``timestamp``), with the seed's warehouse schema (JSON columns as strings) and each event's typed amount
(``amount``, ``amount_overflow``: ``aggregations/amounts.py``; NULL in files written before they existed, filled by
any write that reads such rows back, ``to_lake``, and for the engines by ``engine_rows``).

Every write is one Delta commit. Appends and day overwrites write their own data files (``lake/day_files.py``:
split by day under one memory budget, staged until committed, deleted when the write fails) and commit all their
add actions at the end:

* a sweep **appends** its rows with an application transaction (``app_id`` = the consumer, ``version`` = the sweep
  id): a redone sweep finds its version with :meth:`EventLake.committed_version` and never appends twice;
* a day rebuild (or a backfill's range) **overwrites** those days' partitions: readers see the old days or the new
  ones, never a missing day;
* retention **deletes** by predicate; erasure **replaces the files** holding the events it touched
  (:meth:`EventLake.replace_files`: their removal and the new files' addition in one commit; the log names only
  file paths and dates, never a user id), and :meth:`EventLake.vacuum` removes the files that still held the data.

A day's files hold at most ``FILE_ROWS`` rows each, in time order (``lake/day_files.py``), so the ``timestamp``
min/max of each file in the log tells which files can hold an event (:meth:`LakeSnapshot.files_holding`).

Column statistics in the log are kept to the non-personal columns (``STATS_COLUMNS``), so neither the log nor its
checkpoints ever carry a user id, email or IP. The data files' Parquet settings are ``lake/parquet_settings.py``'s.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.fs import DeltaStorageHandler
from deltalake.transaction import RemoveAction

from workdev_pipeline.aggregations.amounts import fill_amounts
from workdev_pipeline.ingest.extract import read_ahead
from workdev_pipeline.ingest.schema import WAREHOUSE_SCHEMA
from workdev_pipeline.lake.day_files import DEFAULT_BUDGET_BYTES, FILE_ROWS, DayFileWriter, clean_staging
from workdev_pipeline.lake.location import LakeConfigurationError, LakeLocation
from workdev_pipeline.lake.parquet_settings import FILE_SETTINGS, STATS_COLUMNS, FileSettings, file_settings
from workdev_pipeline.lake.table import LakeTable

if TYPE_CHECKING:  # DuckDB is imported when a query runs: a sweep reads its first event without it
    import duckdb

TABLE = "platform_events"
WRITE_BUDGET_ENV = "WORKDEV_LAKE_WRITE_BUDGET_MIB"
FILE_ROWS_ENV = "WORKDEV_LAKE_FILE_ROWS"
PARTITION_COLUMN = "event_date"
#: The lake's columns: the warehouse schema (event_data/metadata as JSON text: Delta has no JSON type) + event_date.
LAKE_SCHEMA = pa.schema([
    *(pa.field(f.name, pa.string(), f.nullable) if isinstance(f.type, pa.BaseExtensionType) else f
      for f in WAREHOUSE_SCHEMA),
    pa.field(PARTITION_COLUMN, pa.date32(), nullable=False),
])
#: Columns the lake gained after its first schema, as DuckDB types (NULL in older files: see ``LakeSnapshot.register``).
ADDED_COLUMNS = {"amount": "DECIMAL(38, 9)", "amount_overflow": "BOOLEAN"}
#: How far a file's ``timestamp`` statistics may be from its rows' (delta-rs truncates them to milliseconds).
STATS_SLACK = timedelta(milliseconds=1)
TABLE_CONFIGURATION = {
    "delta.dataSkippingStatsColumns": ",".join(STATS_COLUMNS),
    "delta.checkpointInterval": "100",
}


@dataclass
class LakeCommit:
    """One commit of the lake: its version (None when nothing was committed) and rows per day written."""

    version: int | None
    days: dict[date, int] = field(default_factory=dict)
    bytes_written: int = 0
    day_bytes: dict[date, int] = field(default_factory=dict)  # data-file bytes committed per day
    files: int = 0  # data files written
    files_removed: int = 0  # data files a replacement removed
    peak_buffered_bytes: int = 0  # the most rows the write held in memory at once (Arrow bytes)

    @property
    def rows(self) -> int:
        return sum(self.days.values())


@dataclass
class CommitActions:
    """The data files one or several commits added and removed (paths relative to the table)."""

    added: dict[str, date] = field(default_factory=dict)
    removed: dict[str, date] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # bytes of each added file
    operations: list[str] = field(default_factory=list)
    data_change: bool = False  # some file action changed the data (False: only rearranged, e.g. compaction)


def write_budget_from_env() -> int:
    """``WORKDEV_LAKE_WRITE_BUDGET_MIB`` in bytes (the default when unset)."""
    raw = os.environ.get(WRITE_BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_BYTES
    try:
        mib = float(raw)
    except ValueError:
        mib = 0.0
    if not mib > 0:
        raise LakeConfigurationError(f"{WRITE_BUDGET_ENV} must be a positive number of MiB, not {raw!r}")
    return int(mib * 1024 * 1024)


def file_rows_from_env() -> int:
    """``WORKDEV_LAKE_FILE_ROWS``: rows per data file (``FILE_ROWS`` when unset; see ``docs/lake.md``)."""
    raw = os.environ.get(FILE_ROWS_ENV, "").strip()
    if not raw:
        return FILE_ROWS
    if not raw.isdigit() or int(raw) < 1:
        raise LakeConfigurationError(f"{FILE_ROWS_ENV} must be a positive number of rows, not {raw!r}")
    return int(raw)


def to_lake(table: pa.Table) -> pa.Table:
    """Warehouse rows (``WAREHOUSE_SCHEMA``) as lake rows: JSON as text, ``event_date`` from ``timestamp`` (UTC);
    lake rows (read back from the lake) as they are. Columns are taken by name, and rows without their typed amount
    (read from files written before ``amount``/``amount_overflow`` existed) get it (``fill_amounts``)."""
    if table.schema.equals(LAKE_SCHEMA) and not table.column("amount_overflow").null_count:
        return table
    table = fill_amounts(table)
    columns = []
    for target in LAKE_SCHEMA:
        if target.name == PARTITION_COLUMN and target.name not in table.column_names:
            columns.append(pc.cast(table.column("timestamp"), pa.date32()))
            continue
        column = table.column(target.name)
        columns.append(column.cast(pa.string()) if isinstance(column.type, pa.BaseExtensionType) else column)
    return pa.Table.from_arrays(columns, schema=LAKE_SCHEMA)


def engine_rows(rows: pa.Table) -> pa.Table:
    """Lake rows of any generation as the engines load them (their tables' columns, in ``WAREHOUSE_SCHEMA``'s
    order, JSON as text, no ``event_date``), with their typed amounts (``fill_amounts``: rows of files written
    before the amount columns existed get them)."""
    rows = fill_amounts(rows)
    return pa.Table.from_arrays(
        [c.cast(pa.string()) if isinstance(c.type, pa.BaseExtensionType) else c
         for c in (rows.column(name) for name in WAREHOUSE_SCHEMA.names)],
        names=WAREHOUSE_SCHEMA.names)


def days_predicate(days: Iterable[date]) -> str:
    """A Delta predicate selecting exactly ``days`` (contiguous runs as ranges): dates only, never data."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    if not runs:
        raise ValueError("no days to select")
    parts = [f"{PARTITION_COLUMN} = '{a.isoformat()}'" if a == b else
             f"({PARTITION_COLUMN} >= '{a.isoformat()}' AND {PARTITION_COLUMN} <= '{b.isoformat()}')" for a, b in runs]
    return " OR ".join(parts)


class EventLake(LakeTable):
    """The events table of the lake at ``location``; a write holds at most ``write_budget_bytes`` of rows in
    memory (``WORKDEV_LAKE_WRITE_BUDGET_MIB``, default 96 MiB), whatever the number of days it spans, and writes
    files of at most ``file_rows`` rows (``WORKDEV_LAKE_FILE_ROWS``, default ``FILE_ROWS``); appends and overwrites
    encode their files with ``file_settings`` (the lake's ``FILE_SETTINGS``; another only to measure)."""

    NAME = TABLE
    SCHEMA = LAKE_SCHEMA
    PARTITION_COLUMN = PARTITION_COLUMN
    CONFIGURATION = TABLE_CONFIGURATION

    def __init__(self, location: LakeLocation, *, write_budget_bytes: int | None = None,
                 file_settings: FileSettings = FILE_SETTINGS, file_rows: int | None = None) -> None:
        super().__init__(location)
        self.write_budget_bytes = write_budget_bytes or write_budget_from_env()
        self.file_settings = file_settings
        self.file_rows = file_rows or file_rows_from_env()

    def committed_version(self, app_id: str) -> int | None:
        """The last application-transaction version ``app_id`` committed (a sweep id), None if none."""
        table = self.table()
        return None if table is None else table.transaction_version(app_id)

    # -- writes ------------------------------------------------------------------------------------
    def append(self, tables: Iterable[pa.Table], *, app_id: str, version: int) -> LakeCommit:
        """Append the rows of ``tables`` (warehouse rows) in one commit carrying ``(app_id, version)``; nothing is
        committed when they hold no row."""
        return self._write(tables, "append", [Transaction(app_id, version)])

    def replace_days(self, days: Sequence[date], tables: Iterable[pa.Table], *,
                     app_id: str | None = None, version: int | None = None) -> LakeCommit:
        """Make ``days`` hold exactly the rows of ``tables`` (all of those days) in one commit (an overwrite of
        those partitions: a day without rows is emptied); other days are untouched."""
        wanted = sorted(set(days))
        if not wanted:
            raise ValueError("no days to replace")
        return self._write(tables, "overwrite", [Transaction(app_id, version)] if app_id else [], days=wanted)

    def replace_files(self, groups: Iterable[tuple[Collection[str], pa.Table]], *, data_change: bool = True,
                      file_rows: int | None = None) -> LakeCommit:
        """Replace data files by new ones in one commit: each group names files (as the log names them; none: only
        an addition) and the rows replacing them (lake or warehouse rows), written in files of their own, in time
        order -- the groups' files removed, the new files added, every other file untouched. ``data_change``
        False: the new files hold exactly the removed files' rows (compaction: engines need not reload them).
        Raises ``FileNotFoundError`` (nothing committed) when a named file is no longer in the table."""
        removed: list[str] = []

        def tables() -> Iterator[pa.Table]:
            for paths, rows in groups:
                removed.extend(paths)
                yield rows

        def removals(table: DeltaTable) -> list[RemoveAction]:
            wanted = set(removed)
            files = pa.table(table.get_add_actions(flatten=True))
            columns = (files.column(c).to_pylist() for c in ("path", f"partition.{PARTITION_COLUMN}", "size_bytes"))
            held = {p: (d, n) for p, d, n in zip(*columns, strict=True) if p in wanted}
            missing = sorted(wanted - set(held))
            if missing:
                raise FileNotFoundError(f"lake file(s) no longer in the table: {', '.join(missing[:3])}")
            now = int(time.time() * 1000)
            return [RemoveAction(p, data_change, now, n, {PARTITION_COLUMN: d.isoformat()})
                    for p, (d, n) in sorted(held.items())]

        commit = self._write(tables(), "append", [], removals=removals, grouped=True, data_change=data_change,
                             file_rows=file_rows)
        commit.files_removed = len(set(removed))
        return commit

    def delete(self, predicate: str, *, days: int | None = None) -> dict:
        """Delete the rows matching ``predicate`` (no personal values in it: it is written to the log); ``days``:
        how many days it rewrites, when known (see ``file_settings``)."""
        table = self.table()
        if table is None:
            return {"num_deleted_rows": 0}
        self.clean_staging()
        self.check_writable()
        return table.delete(predicate, writer_properties=file_settings(days).writer_properties())

    def _write(self, tables: Iterable[pa.Table], mode: str, transactions: list[Transaction],
               days: list[date] | None = None, *, removals: Callable[[DeltaTable], list[RemoveAction]] | None = None,
               grouped: bool = False,
               data_change: bool = True, file_rows: int | None = None) -> LakeCommit:
        """One commit of ``tables`` (warehouse or lake rows): their data files written by a
        :class:`DayFileWriter` within ``write_budget_bytes``, then their add actions committed together (with
        ``mode="overwrite"``, replacing ``days``; with ``removals``, removing the files it returns once the tables
        are written). ``grouped``: each
        table's rows end in files of their own. On any error the files written so far are deleted.

        The tables are produced on a thread of their own, a couple ahead (``read_ahead``): their producer (a
        PostgreSQL stream, validation and enrichment, or another snapshot's files) overlaps Parquet encoding."""
        table = self.ensure()
        before = table.version()
        self.clean_staging()
        writer = DayFileWriter(self.filesystem(), schema=LAKE_SCHEMA, partition_column=PARTITION_COLUMN,
                               settings=self.file_settings, budget_bytes=self.write_budget_bytes,
                               version_before=before, file_rows=file_rows or self.file_rows,
                               data_change=data_change)
        commit = LakeCommit(None, dict.fromkeys(days or [], 0))
        try:
            for lake_rows in read_ahead(to_lake(t) for t in tables if t.num_rows):
                writer.add(lake_rows)
                if grouped:
                    writer.flush()
            actions: list = [*writer.finish()]
            if removals is not None:
                actions = [*removals(table), *actions]
            if actions or mode == "overwrite":
                filters = [(PARTITION_COLUMN, "in", [d.isoformat() for d in days])] if days else None
                table.create_write_transaction(
                    actions, mode, table.schema(), partition_by=[PARTITION_COLUMN], partition_filters=filters,
                    commit_properties=CommitProperties(app_transactions=transactions or None))
        except BaseException:
            writer.abort()
            raise
        writer.committed()
        commit.days.update(writer.stats.days)
        commit.files, commit.peak_buffered_bytes = writer.stats.files, writer.stats.peak_buffered_bytes
        return self._finish(commit, before)

    def _finish(self, commit: LakeCommit, before: int) -> LakeCommit:
        table = self.table()
        assert table is not None
        if table.version() > before:
            commit.version = table.version()
            actions = self.actions(before, commit.version)
            for path, day in actions.added.items():
                commit.day_bytes[day] = commit.day_bytes.get(day, 0) + actions.sizes.get(path, 0)
            commit.bytes_written = sum(commit.day_bytes.values())
        return commit

    def clean_staging(self) -> int:
        """Delete the data files of earlier writes that never committed (see ``lake/day_files.py``); returns how
        many. Every write starts with it (under the writers' lock)."""
        def committed_paths(version_before: int | None) -> set[str] | None:
            latest = self.version()
            if version_before is None or latest is None:
                return None
            try:
                actions = self.actions(version_before, latest)
            except FileNotFoundError:
                return None
            return {unquote(p) for p in (*actions.added, *actions.removed)}

        return clean_staging(self.filesystem(), committed_paths)

    def filesystem(self) -> pafs.FileSystem:
        """The table's directory as a file system (paths relative to it)."""
        root = self.location.local_path(TABLE)
        if root is not None:
            os.makedirs(root, exist_ok=True)
            return pafs.SubTreeFileSystem(root, pafs.LocalFileSystem())
        return self._filesystem()

    # -- the log -----------------------------------------------------------------------------------
    def _filesystem(self) -> pafs.FileSystem:
        return pafs.PyFileSystem(DeltaStorageHandler(self.uri, options=self.storage_options))

    def actions(self, after: int, upto: int) -> CommitActions:
        """The files commits ``after + 1 .. upto`` added and removed, net (a file added then removed is neither),
        read from the Delta log; raises FileNotFoundError when a commit's log entry was cleaned up."""
        result = CommitActions()
        fs = self._filesystem()
        for version in range(after + 1, upto + 1):
            with fs.open_input_stream(f"_delta_log/{version:020d}.json") as stream:
                text = stream.read().decode()
            for line in text.splitlines():
                if not line.strip():
                    continue
                action = json.loads(line)
                if "add" in action or "remove" in action:
                    result.data_change |= bool((action.get("add") or action.get("remove")).get("dataChange", True))
                if "add" in action:
                    add = action["add"]
                    result.added[add["path"]] = date.fromisoformat(add["partitionValues"][PARTITION_COLUMN])
                    result.sizes[add["path"]] = int(add.get("size") or 0)
                elif "remove" in action:
                    remove = action["remove"]
                    day = date.fromisoformat((remove.get("partitionValues") or {})[PARTITION_COLUMN])
                    if result.added.pop(remove["path"], None) is None:
                        result.removed[remove["path"]] = day
                elif "commitInfo" in action:
                    result.operations.append(action["commitInfo"].get("operation", ""))
        return result

    # -- reads -------------------------------------------------------------------------------------
    def snapshot(self, version: int | None = None) -> LakeSnapshot:
        """A consistent read of the table (its latest version unless ``version``)."""
        return LakeSnapshot(self, self.table(version))


class LakeSnapshot:
    """One version of the events table: every read through it sees the same files, whatever is committed since."""

    def __init__(self, lake: EventLake, table: DeltaTable | None) -> None:
        self.lake = lake
        self.table = table
        self.version = None if table is None else table.version()

    def dataset(self, days: Iterable[date] | None = None) -> ds.Dataset:
        """The rows as a pyarrow dataset (``days``: only those partitions' files)."""
        if self.table is None:
            return ds.dataset(pa.Table.from_batches([], LAKE_SCHEMA))
        filters = None if days is None else [(PARTITION_COLUMN, "in", sorted(set(days)))]
        if filters is not None and not filters[0][2]:
            return ds.dataset(pa.Table.from_batches([], LAKE_SCHEMA))
        return self.table.to_pyarrow_dataset(file_pruning_predicate=filters)

    def register(self, con: duckdb.DuckDBPyConnection, name: str = "platform_events",
                 days: Iterable[date] | None = None) -> None:
        """Make ``name`` a DuckDB view of the snapshot's rows (or of ``days`` only): on a local lake DuckDB reads
        the snapshot's own files with its Parquet reader (~1.15x faster than through the Arrow dataset), elsewhere
        through delta-rs's dataset."""
        root = self.lake.location.local_path(TABLE)
        if self.table is None or root is None:
            con.register(name, self.dataset(days))
            return
        files = self.files()
        if days is not None:
            wanted = pa.array(sorted(set(days)), pa.date32())
            files = files.filter(pc.is_in(files.column("event_date"), value_set=wanted))
        if not files.num_rows:
            con.register(name, ds.dataset(pa.Table.from_batches([], LAKE_SCHEMA)))
            return
        paths = [os.path.join(root, unquote(p)) for p in files.column("path").to_pylist()]
        # by name: files written before the typed amount columns lack them (NULL there, as delta-rs reads them)
        relation = con.read_parquet(paths, hive_partitioning=True, union_by_name=True)
        missing = [f"CAST(NULL AS {kind}) AS {column}" for column, kind in ADDED_COLUMNS.items()
                   if column not in relation.columns]
        if missing:
            relation = relation.select(", ".join([*(f'"{c}"' for c in relation.columns), *missing]))
        relation.create_view(name)

    def query(self, sql: str, parameters: Sequence | None = None, days: Iterable[date] | None = None,
              name: str = "platform_events") -> list[tuple]:
        """DuckDB ``sql`` where ``name`` is the snapshot's rows (UTC session time zone)."""
        import duckdb

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            self.register(con, name, days)
            return con.execute(sql, list(parameters or [])).fetchall()
        finally:
            con.close()

    def files(self) -> pa.Table:
        """The data files: path, size_bytes, num_records, event_date, and the ``timestamp`` range of their rows from
        the log's statistics (``min_time``/``max_time``, null where a file has none)."""
        instant = pa.timestamp("us", tz="UTC")
        if self.table is None:
            return pa.table({"path": pa.array([], pa.string()), "size_bytes": pa.array([], pa.int64()),
                             "num_records": pa.array([], pa.int64()), "event_date": pa.array([], pa.date32()),
                             "min_time": pa.array([], instant), "max_time": pa.array([], instant)})
        actions = pa.table(self.table.get_add_actions(flatten=True))
        names = set(actions.column_names)

        def instants(name: str) -> pa.ChunkedArray | pa.Array:
            if name in names:
                return actions.column(name).cast(instant)
            return pa.nulls(actions.num_rows, instant)

        return pa.table({"path": actions.column("path"), "size_bytes": actions.column("size_bytes"),
                         "num_records": actions.column("num_records"),
                         "event_date": actions.column(f"partition.{PARTITION_COLUMN}"),
                         "min_time": instants("min.timestamp"), "max_time": instants("max.timestamp")})

    def files_holding(self, instants: Iterable[datetime]) -> dict[str, date]:
        """The data files that may hold rows at ``instants`` (path -> day): those of the instant's day whose
        ``timestamp`` range in the log covers it (widened by ``STATS_SLACK``: statistics may be truncated to
        milliseconds), and every file of that day without a range."""
        wanted: dict[date, list[datetime]] = {}
        for instant in instants:
            utc = instant.astimezone(UTC)
            wanted.setdefault(utc.date(), []).append(utc)
        if not wanted:
            return {}
        files = self.files()
        files = files.filter(pc.is_in(files.column(PARTITION_COLUMN), value_set=pa.array(sorted(wanted), pa.date32())))
        found: dict[str, date] = {}
        for path, day, low, high in zip(*(files.column(c).to_pylist() for c in
                                          ("path", PARTITION_COLUMN, "min_time", "max_time")), strict=True):
            if low is None or high is None or any(low - STATS_SLACK <= t <= high + STATS_SLACK for t in wanted[day]):
                found[path] = day
        return found

    def day_files(self, day: date) -> list[str]:
        """The day's data files (paths relative to the table)."""
        files = self.files()
        mask = pc.equal(files.column("event_date"), pa.scalar(day, pa.date32()))
        return sorted(files.filter(mask).column("path").to_pylist())

    def days(self) -> list[date]:
        return sorted(set(self.files().column("event_date").to_pylist()))

    def file_uri(self, path: str) -> str:
        return f"{self.lake.uri.rstrip('/')}/{path}"

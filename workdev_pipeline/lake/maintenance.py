"""Maintenance of ``lake/platform_events``: compaction of the small files sweeps leave, a checkpoint, the log's
expired entries cleaned up, and a vacuum of the files no version within the retention still needs (and, first,
the files an uncommitted write left staged: ``lake/day_files.py``).

A sweep every ~30 s appends one small file per day it touches: a day ends with ~2,880 files of a few hundred rows,
and every reader of that day opens them all. :func:`maintain` re-sorts each day whose files are out of the lake's
layout -- several files shorter than ``FILE_ROWS`` rows, a file longer (delta-rs's own writes: retention's
deletes), or files whose time ranges overlap -- into files of ``FILE_ROWS`` rows in time order (the layout an
erasure relies on to rewrite only the files holding touched events, ``lake/events.py``), one commit removing the
old files and adding the new ones with ``dataChange=false``: readers see the same rows before and after, engines
reload nothing. A day's files are read in order of their first instant and merged, so memory stays at a few files
when they follow one another in time (sweeps' files do), at most the write budget otherwise. ``target_size`` (the
``target_file_mb`` option) instead aims each day's files at a size in bytes. Then it vacuums the replaced files once
they are older than the retention, writes a checkpoint and drops the log entries older than the table's log
retention.

Serialised with the lake's writers: every commit here (compaction, vacuum, checkpoint) happens under the same
PostgreSQL advisory lock the ingestion engine holds during each lake write (``pg_advisory_lock(hashtext(
'workdev.ingest'), hashtext(<consumer>))``), so a compaction never conflicts with a day rebuild's predicate
overwrite. The lock is taken per step, so sweeps go on between the steps.

Z-order by ``user_id`` is available (``z_order=True``, delta-rs's ``optimize.z_order``) but off: measured
(``bench/bench_lake.py``), it does not pay for erasure here -- ``user_id`` has no statistics in the Delta log
(nothing personal is kept there), so no file can be skipped by it, while z-ordered files lose the time order the
erasure's file pruning and the aggregations' hourly reads rely on. See ``docs/lake.md``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import unquote

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler

from workdev_pipeline.errors import OperationFailed
from workdev_pipeline.ingest.ingestor import LOCK_STATEMENT
from workdev_pipeline.lake.day_files import FILE_ROWS, TIME_COLUMN
from workdev_pipeline.lake.events import PARTITION_COLUMN, EventLake, LakeSnapshot

#: A day is compacted when it has at least this many files shorter than the layout's (or one longer, or overlaps).
MIN_SMALL_FILES = 2
#: Delta's defaults when the table does not set ``delta.logRetentionDuration`` / ``delta.deletedFileRetentionDuration``.
DEFAULT_LOG_RETENTION = timedelta(days=30)
DEFAULT_DELETED_FILE_RETENTION = timedelta(days=7)
#: How long maintenance waits for the lake's lock (a long rebuild holds it) before giving up.
DEFAULT_LOCK_TIMEOUT_SECONDS = 600.0


class LakeBusy(OperationFailed):
    """The lake's writer lock could not be taken in time."""


@dataclass
class MaintenanceResult:
    """What one :func:`maintain` did (it becomes the materialization's metadata)."""

    version_before: int | None = None
    version: int | None = None
    files_before: int = 0
    files_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    days_compacted: list[date] = field(default_factory=list)
    day_files: dict[date, tuple[int, int]] = field(default_factory=dict)  # compacted day -> files before, after
    files_removed: int = 0  # small files the compaction replaced
    files_added: int = 0  # files the compaction wrote
    z_ordered: bool = False
    vacuum_retention_hours: float = 0.0
    files_vacuumed: int = 0
    checkpoint_version: int | None = None
    log_files_before: int = 0
    log_files_after: int = 0
    seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        days = len(self.days_compacted)
        return (f"lake maintenance: {self.files_before:,} -> {self.files_after:,} files, {self.bytes_before:,} -> "
                f"{self.bytes_after:,} bytes ({days} day(s) compacted{', z-ordered' if self.z_ordered else ''}); "
                f"{self.files_vacuumed:,} file(s) vacuumed (retention {self.vacuum_retention_hours:g} h); log files "
                f"{self.log_files_before:,} -> {self.log_files_after:,}; version {self.version_before} -> "
                f"{self.version} in {self.seconds:.2f} s")


class LakeLock:
    """The lake writers' advisory lock (the ingestion engine's, per consumer) on one session, taken per step.

    ``database_url`` None: no lock (only where nothing else writes the lake, e.g. a one-off import before the
    pipeline starts)."""

    def __init__(self, database_url: str | None, *, consumer: str = "lake",
                 timeout_seconds: float | None = DEFAULT_LOCK_TIMEOUT_SECONDS) -> None:
        self.database_url = database_url
        self.consumer = consumer
        self.timeout_seconds = timeout_seconds
        self._conn: psycopg.Connection | None = None

    def __enter__(self) -> LakeLock:
        if self.database_url is not None:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
            timeout = f"{int(self.timeout_seconds * 1000)}ms" if self.timeout_seconds else "0"
            self._conn.execute("SELECT set_config('lock_timeout', %s, false)", (timeout,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()  # a session lock still held goes with the session
            self._conn = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block (waiting at most ``timeout_seconds``; raises :class:`LakeBusy` then)."""
        if self._conn is None:
            yield
            return
        try:
            self._conn.execute(LOCK_STATEMENT.format("pg_advisory_lock"), (self.consumer,))
        except psycopg.errors.LockNotAvailable:
            raise LakeBusy(f"the lake's writer lock ({self.consumer!r}) is still held after "
                           f"{self.timeout_seconds:g} s (a long rebuild?); try again later") from None
        try:
            yield
        finally:
            self._conn.execute(LOCK_STATEMENT.format("pg_advisory_unlock"), (self.consumer,))


@contextmanager
def lake_lock(database_url: str | None, *, consumer: str = "lake",
              timeout_seconds: float | None = DEFAULT_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the lake writers' advisory lock for the block (see :class:`LakeLock`)."""
    with LakeLock(database_url, consumer=consumer, timeout_seconds=timeout_seconds) as lock, lock.held():
        yield


def maintain(lake: EventLake, *, vacuum_retention_hours: float | None = None,
             database_url: str | None = None, consumer: str = "lake", target_size: int | None = None,
             since: date | None = None, min_small_files: int = MIN_SMALL_FILES, z_order: bool = False,
             keep_log_from_version: int | None = None, cleanup_log: bool = True,
             lock_timeout_seconds: float | None = DEFAULT_LOCK_TIMEOUT_SECONDS,
             now: datetime | None = None) -> MaintenanceResult:
    """Compact, vacuum, checkpoint and clean the log of ``lake``'s events table.

    * ``since``: only days from this one on are compacted (None: every day out of layout -- late events leave
      small files in old days too; finding them costs a scan of the file list, not of the data);
    * ``target_size``: bytes each compacted file aims at (None: ``FILE_ROWS`` rows each, the lake's layout);
    * ``vacuum_retention_hours``: files removed from the table less than this long ago are kept (readers of older
      versions, time travel); None: the table's ``delta.deletedFileRetentionDuration`` (7 days unless set). With
      that retention each removed file is deleted once: the checkpoint written next drops its tombstone. A shorter
      one deletes files sooner, and a tombstone stays in the log (and is deleted again, a no-op) until then; a
      longer one needs a full vacuum (a listing of the table's files), done here when so;
    * ``keep_log_from_version``: the oldest lake version an engine has delivered: the log entries after it are
      kept (the log's cleanup is skipped while they are older than the log retention), so the engine's next
      delivery reads the commits since rather than reloading everything. (Vacuum never takes what an engine still
      needs: a delivery only reads files of its snapshot, see ``lake/delivery.py``.)
    * ``database_url``: take the lake writers' lock around each step (None: no lock -- nothing else may write).
    """
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    result = MaintenanceResult()
    table = lake.table()
    if table is None:
        result.notes.append("the lake has no events table yet: nothing to do")
        result.seconds = time.perf_counter() - started
        return result
    result.version_before = table.version()
    files = lake.snapshot().files()
    result.files_before, result.bytes_before = files.num_rows, _total(files)
    before = _files_per_day(files)
    log = _LogFiles(lake)
    result.log_files_before = log.count()

    with LakeLock(database_url, consumer=consumer, timeout_seconds=lock_timeout_seconds) as lock:
        with lock.held():
            staged = lake.clean_staging()
        if staged:
            result.notes.append(f"{staged} data file(s) of an uncommitted write (left in _staging) deleted")
        rows_per_file = file_rows_by_day(files, target_size, lake.file_rows)
        days = compaction_days(files, rows_per_file, min_small_files=min_small_files, since=since)
        if days:
            step = time.perf_counter()
            with lock.held():
                lake.check_writable()
                if z_order:
                    table.update_incremental()
                    filters = [(PARTITION_COLUMN, "in", [d.isoformat() for d in days])]
                    metrics = table.optimize.z_order(["user_id"], partition_filters=filters, target_size=target_size,
                                                     writer_properties=lake.file_settings.writer_properties())
                    removed, added = int(metrics.get("numFilesRemoved", 0)), int(metrics.get("numFilesAdded", 0))
                else:
                    removed, added = _compact(lake, days, rows_per_file)
            result.days_compacted = days
            result.z_ordered = z_order
            result.files_removed, result.files_added = removed, added
            result.step_seconds["compact"] = time.perf_counter() - step

        step = time.perf_counter()
        tombstones_kept = _interval(table, "delta.deletedFileRetentionDuration", DEFAULT_DELETED_FILE_RETENTION)
        retention = (tombstones_kept.total_seconds() / 3600 if vacuum_retention_hours is None
                     else vacuum_retention_hours)
        result.vacuum_retention_hours = retention
        full = retention * 3600 > tombstones_kept.total_seconds()
        if full:
            result.notes.append(f"full vacuum: the retention ({retention:g} h) outlives the tombstones in the log "
                                f"({tombstones_kept}), so the table's files were listed")
        with lock.held():
            table.update_incremental()
            result.files_vacuumed = len(table.vacuum(retention_hours=math.ceil(retention), dry_run=False,
                                                     enforce_retention_duration=False, full=full))
        result.step_seconds["vacuum"] = time.perf_counter() - step

        step = time.perf_counter()
        with lock.held():
            table.update_incremental()
            if log.last_checkpoint() != table.version():
                table.create_checkpoint()
            result.checkpoint_version = table.version()
            if cleanup_log and _log_cleanup_safe(table, log, keep_log_from_version, now, result):
                table.cleanup_metadata()
        result.step_seconds["checkpoint"] = time.perf_counter() - step

    table = lake.table()
    assert table is not None
    result.version = table.version()
    files = lake.snapshot().files()
    result.files_after, result.bytes_after = files.num_rows, _total(files)
    after = _files_per_day(files)
    result.day_files = {d: (before.get(d, 0), after.get(d, 0)) for d in result.days_compacted}
    result.log_files_after = log.count()
    result.seconds = time.perf_counter() - started
    return result


def file_rows_by_day(files: pa.Table, target_size: int | None = None, file_rows: int = FILE_ROWS) -> dict[date, int]:
    """Rows per file of each day: ``file_rows``, or (``target_size``) as many as make a file of about that many
    bytes at the day's bytes per row."""
    days = sorted(set(files.column(PARTITION_COLUMN).to_pylist()))
    if target_size is None:
        return dict.fromkeys(days, file_rows)
    found: dict[date, int] = {}
    for day in days:
        held = files.filter(pc.equal(files.column(PARTITION_COLUMN), pa.scalar(day, pa.date32())))
        rows = int(pc.sum(held.column("num_records")).as_py() or 0)
        size = int(pc.sum(held.column("size_bytes")).as_py() or 0)
        found[day] = max(1, target_size * rows // size) if rows and size else file_rows
    return found


def compaction_days(files: pa.Table, rows_per_file: dict[date, int] | None = None, *,
                    min_small_files: int = MIN_SMALL_FILES, since: date | None = None) -> list[date]:
    """The days (from ``since`` on) out of the lake's layout: at least ``min_small_files`` files shorter than the
    day's rows per file (``FILE_ROWS`` unless given), a file longer, a file without a time range among several, or
    files whose time ranges overlap."""
    found = []
    for day in sorted(set(files.column(PARTITION_COLUMN).to_pylist())):
        if since is not None and day < since:
            continue
        limit = (rows_per_file or {}).get(day, FILE_ROWS)
        held = files.filter(pc.equal(files.column(PARTITION_COLUMN), pa.scalar(day, pa.date32())))
        counts = [n or 0 for n in held.column("num_records").to_pylist()]
        ranges = sorted(zip(held.column("min_time").to_pylist(), held.column("max_time").to_pylist(), strict=True),
                        key=lambda r: (r[0] is not None, r[0]))
        small = sum(1 for n in counts if n < limit)
        unranged = len(ranges) > 1 and any(low is None or high is None for low, high in ranges)
        overlapping = False
        if not unranged and ranges:
            reach = ranges[0][1]
            for low, high in ranges[1:]:
                overlapping |= low < reach
                reach = max(reach, high)
        if small >= min_small_files or max(counts, default=0) > limit or unranged or overlapping:
            found.append(day)
    return found


def _compact(lake: EventLake, days: list[date], rows_per_file: dict[date, int]) -> tuple[int, int]:
    """Re-sort ``days`` into files of their rows per file, in time order: one commit (``dataChange=false``) per
    rows-per-file value (one in the lake's layout); returns (files removed, files added)."""
    removed = added = 0
    by_size: dict[int, list[date]] = {}
    for day in days:
        by_size.setdefault(rows_per_file.get(day, FILE_ROWS), []).append(day)
    for file_rows, group in sorted(by_size.items()):
        snapshot = lake.snapshot()
        commit = lake.replace_files(_sorted_days(snapshot, group, file_rows, lake.write_budget_bytes),
                                    data_change=False, file_rows=file_rows)
        removed += commit.files_removed
        added += commit.files
    return removed, added


def _sorted_days(snapshot: LakeSnapshot, days: list[date], file_rows: int,
                 budget_bytes: int) -> Iterator[tuple[list[str], pa.Table]]:
    """Each day's rows in time order, in runs of whole files (the first run naming all the day's files): the day's
    files read in order of their first instant, and every row before the next file's first instant passed on."""
    files = snapshot.files()
    for day in days:
        held = files.filter(pc.equal(files.column(PARTITION_COLUMN), pa.scalar(day, pa.date32())))
        order = sorted(zip(held.column("min_time").to_pylist(), held.column("path").to_pylist(), strict=True),
                       key=lambda f: (f[0] is not None, f[0] or 0, f[1]))
        paths = [p for _, p in order]
        dataset = snapshot.dataset(days=[day])
        fragments, schema = {f.path: f for f in dataset.get_fragments()}, dataset.schema
        pending: pa.Table | None = None
        named = False
        for k, path in enumerate(paths):
            rows = fragments[unquote(path)].to_table(schema=schema)
            pending = rows if pending is None else pa.concat_tables([pending, rows])
            pending = pending.take(pc.sort_indices(pending.column(TIME_COLUMN)))
            if k + 1 < len(paths) and order[k + 1][0] is not None and pending.nbytes <= budget_bytes:
                bound = pa.scalar(order[k + 1][0], pending.schema.field(TIME_COLUMN).type)
                ready = int(pc.sum(pc.less(pending.column(TIME_COLUMN), bound)).as_py() or 0)
            elif k + 1 < len(paths):
                ready = pending.num_rows if pending.nbytes > budget_bytes else 0
            else:
                ready = pending.num_rows
            if k + 1 < len(paths):
                ready -= ready % file_rows
            if ready:
                yield ([] if named else paths), pending.slice(0, ready)
                named = True
                pending = pending.slice(ready)
        if not named:  # a day whose files hold no rows
            yield paths, pa.Table.from_batches([], schema)


def _files_per_day(files: pa.Table) -> dict[date, int]:
    if not files.num_rows:
        return {}
    return {c["values"]: c["counts"] for c in pc.value_counts(files.column(PARTITION_COLUMN)).to_pylist()}


def _total(files: pa.Table) -> int:
    return int(pc.sum(files.column("size_bytes")).as_py() or 0) if files.num_rows else 0


class _LogFiles:
    """The table's ``_delta_log`` directory, read through delta-rs' storage (local or object store)."""

    def __init__(self, lake: EventLake) -> None:
        self.fs = pafs.PyFileSystem(DeltaStorageHandler(lake.uri, options=lake.storage_options))

    def count(self) -> int:
        try:
            return len(self.fs.get_file_info(pafs.FileSelector("_delta_log", allow_not_found=True)))
        except (FileNotFoundError, OSError):
            return 0

    def last_checkpoint(self) -> int | None:
        """The version of the table's last checkpoint (``_last_checkpoint``), None without one."""
        try:
            with self.fs.open_input_stream("_delta_log/_last_checkpoint") as stream:
                return int(json.loads(stream.read().decode())["version"])
        except (FileNotFoundError, OSError, ValueError, KeyError):
            return None

    def commit_time(self, version: int) -> datetime | None:
        """When ``version`` was committed (its commitInfo), None when its log entry is gone or has no time."""
        try:
            with self.fs.open_input_stream(f"_delta_log/{version:020d}.json") as stream:
                text = stream.read().decode()
        except (FileNotFoundError, OSError):
            return None
        for line in text.splitlines():
            if '"commitInfo"' in line:
                stamp = json.loads(line)["commitInfo"].get("timestamp")
                if stamp is not None:
                    return datetime.fromtimestamp(int(stamp) / 1000, UTC)
        return None


_INTERVAL = re.compile(r"^\s*(?:interval\s+)?(\d+)\s*(second|minute|hour|day|week)s?\s*$", re.IGNORECASE)


def _interval(table: DeltaTable, key: str, default: timedelta) -> timedelta:
    """A table property holding a Delta interval (``interval 30 days``), ``default`` when unset or unreadable."""
    match = _INTERVAL.match(table.metadata().configuration.get(key) or "")
    if not match:
        return default
    return timedelta(**{f"{match.group(2).lower()}s": int(match.group(1))})


def _log_cleanup_safe(table: DeltaTable, log: _LogFiles, keep_from_version: int | None, now: datetime,
                      result: MaintenanceResult) -> bool:
    """False (and a note) when cleaning the log would drop an entry an engine still has to read."""
    if keep_from_version is None:
        return True
    committed = log.commit_time(keep_from_version + 1)
    if committed is None or now - committed < _interval(table, "delta.logRetentionDuration",
                                                        DEFAULT_LOG_RETENTION) - timedelta(hours=1):
        return True
    result.notes.append(f"log cleanup skipped: an engine still needs the log entries after version {keep_from_version}")
    return False

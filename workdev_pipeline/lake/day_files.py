"""The data files of one lake write: a stream of lake rows split by day into Parquet files of at most ``FILE_ROWS``
rows each, in time order, under a memory budget shared by all days, staged until the caller commits them as one
Delta commit.

**Layout.** A day's rows are written sorted by ``timestamp`` and cut into files of ``FILE_ROWS`` rows (the last
one shorter), so each file covers its own stretch of the day and its ``timestamp`` min/max in the log say which
file holds an event: an erasure rewrites only the files holding touched events, not whole days
(:meth:`~workdev_pipeline.lake.events.EventLake.replace_files`). Smaller files rewrite less per touched event and
cost more per bulk write (a footer, a file and a log action each): the choice is measured in ``bench/README.md``
and ``docs/lake.md``.

Rows wait in memory per day, as the batches they came in: a day holds each batch's rows of it as row numbers,
so a row is copied once, when its day's files are written (gathered in time order), not also when its batch is split
by day. A batch is held (and counts against ``budget_bytes``, whole) until every day of it is written out. Whenever
the batches held exceed ``budget_bytes``, the largest days are written out (their full files; a day's last, partial
file is copied and waits for more rows unless the day is short), until half the budget is left, so a backlog spread
thin over hundreds of days costs the same memory as one over a few days: a day may end with several runs of files,
which maintenance re-sorts (``lake/maintenance.py``). Days written out together (those flushes, and the write's
end) are written in turn, each day's rows gathered while the day before it is encoded by the process's encoding
threads. The files are encoded as the write's :class:`FileSettings` say (``lake/parquet_settings.py``: with page
checksums); a file is a single row group (its rows are fewer than the settings' ``row_group_rows``: the file size is
what bounds it).

**Staging.** Until its commit, a write's files are in the table's directory but not in its log. Their paths are
listed in ``_staging/<token>.json`` (beside ``_delta_log``; readers and vacuum ignore it) *before* each file is
written, so whatever stops a write -- an error, a full disk, a killed process -- what it wrote can be found:
:meth:`DayFileWriter.abort` deletes the files and the list on an error, and :func:`clean_staging` (at the start of
every write of the table, under the writers' lock) deletes what an earlier write could not -- unless that write's
commit made it into the log, then only the list goes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from workdev_pipeline.lake.parquet_settings import FileSettings

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"
#: What one write may hold in memory, all days together (Arrow bytes of rows waiting for their day's next file): less
#: held is fewer fresh pages for the sweep to fault in; less than 64 MiB writes out days of a thin backlog in more
#: pieces (bench/README.md, "Memory by the backlog's shape").
DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024
#: Rows per data file (one row group each): see the module's documentation.
FILE_ROWS = 16384
TIME_COLUMN = "timestamp"
#: A data file is written through a buffer of this size (a file of ``FILE_ROWS`` rows is ~1 MiB).
WRITE_BUFFER_BYTES = 1024 * 1024
#: Threads encoding a write's files: a day's files are encoded side by side, so the sweep's flushes -- the one at
#: its end above all -- keep every core busy (``bench/README.md``, "The ratio to the wire").
ENCODE_THREADS = min(os.cpu_count() or 2, 4)
_pools: dict[int, ThreadPoolExecutor] = {}  # per process


@dataclass
class WriteStats:
    """Rows per day written, files and bytes, and the most the write held in memory at once."""

    days: dict[date, int] = field(default_factory=dict)
    files: int = 0
    bytes_written: int = 0
    peak_buffered_bytes: int = 0


@dataclass(eq=False)
class _Held:
    """A batch held (counted against the budget, whole) until each of its ``days`` is written out."""

    rows: pa.Table
    nbytes: int
    days: int


@dataclass(frozen=True)
class _Piece:
    """One day's rows of a held batch: their row numbers in it (None: all of its rows)."""

    held: _Held
    index: pa.Array | None

    @property
    def num_rows(self) -> int:
        return self.held.rows.num_rows if self.index is None else len(self.index)


@dataclass(frozen=True)
class _FileWrite:
    """One data file being encoded: its path, its day and the write's ``(size, stats)``."""

    path: str
    day: date
    result: Future[tuple[int, str]]


class DayFileWriter:
    """Writes one commit's data files into the table at ``fs`` (a file system rooted at the table's directory),
    encoded as ``settings`` say; their add actions carry the statistics of ``settings.stats_columns``."""

    def __init__(self, fs: pafs.FileSystem, *, schema: pa.Schema, partition_column: str,
                 settings: FileSettings, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 version_before: int | None = None, file_rows: int = FILE_ROWS, data_change: bool = True) -> None:
        self.fs = fs
        self.partition_column = partition_column
        self.file_schema = schema.remove(schema.get_field_index(partition_column))
        self.settings = settings
        self._options = settings.pyarrow_options(self.file_schema)
        self.budget_bytes = budget_bytes
        self.file_rows = file_rows
        self.data_change = data_change  # False: the files rearrange rows the table holds (compaction)
        self.token = uuid.uuid4().hex
        self.stats = WriteStats()
        self.actions: list[AddAction] = []
        self._staged: list[str] = []
        self._version_before = version_before
        self._pending: dict[date, list[_Piece]] = {}
        self._pending_bytes: dict[date, int] = {}
        self._buffered = 0

    @property
    def staging_list(self) -> str:
        return f"{STAGING_DIR}/{self.token}.json"

    def add(self, rows: pa.Table) -> None:
        """Take lake rows of any days; write out the largest days while the budget is exceeded."""
        if not rows.num_rows:
            return
        for day, piece in self._hold(rows, _by_day(rows, self.partition_column)):
            self.stats.days[day] = self.stats.days.get(day, 0) + piece.num_rows
        self.stats.peak_buffered_bytes = max(self.stats.peak_buffered_bytes, self._buffered)
        if self._buffered > self.budget_bytes:
            largest = sorted(self._pending_bytes, key=self._pending_bytes.__getitem__, reverse=True)
            self._write_out(largest, keep_tail=True, until_bytes=self.budget_bytes // 2)

    def _hold(self, rows: pa.Table, days: list[tuple[date, pa.Array | None]]) -> list[tuple[date, _Piece]]:
        """Hold ``rows`` for ``days`` (each with its rows' numbers, as ``_by_day`` gives them); the pieces held."""
        held = _Held(rows, rows.nbytes, len(days))
        self._buffered += held.nbytes
        pieces = [(day, _Piece(held, index)) for day, index in days]
        for day, piece in pieces:
            self._pending.setdefault(day, []).append(piece)
            share = held.nbytes * piece.num_rows // rows.num_rows  # what writing the day out frees, at most
            self._pending_bytes[day] = self._pending_bytes.get(day, 0) + share
        return pieces

    def flush(self) -> None:
        """Write out every day still held (a group of rows that must end in files of its own: see
        :meth:`~workdev_pipeline.lake.events.EventLake.replace_files`)."""
        self._write_out(sorted(self._pending))

    def finish(self) -> list[AddAction]:
        """Write out every day still held; the add actions of all the files written."""
        self.flush()
        return self.actions

    def _write_out(self, days: list[date], *, keep_tail: bool = False, until_bytes: int = -1) -> None:
        """Write out ``days`` in turn until no more than ``until_bytes`` are held: a day's rows are gathered while the
        day before it is encoded (at most two days' files in hand), and every file is finished when this returns."""
        previous: list[_FileWrite] = []
        current: list[_FileWrite] = []
        try:
            for day in days:
                if self._buffered <= until_bytes:
                    break
                current = self._flush(day, keep_tail=keep_tail)
                self._collect(previous)
                previous, current = current, []
            self._collect(previous)
        except BaseException:  # every file in flight finishes before the error is raised: abort() finds them all
            wait([write.result for write in previous + current])
            raise

    def _collect(self, writes: list[_FileWrite]) -> None:
        """Once ``writes`` are done, their add actions (in order); the first failed write's error is raised."""
        wait([write.result for write in writes])
        for write in writes:
            if write.result.exception() is not None:
                raise write.result.exception()
        for write in writes:
            size, stats = write.result.result()
            self.actions.append(AddAction(write.path, size, {self.partition_column: write.day.isoformat()},
                                          int(time.time() * 1000), self.data_change, stats))
            self.stats.files += 1
            self.stats.bytes_written += size

    def _flush(self, day: date, *, keep_tail: bool = False) -> list[_FileWrite]:
        """Start writing the day's rows as files of ``file_rows`` rows in time order (their writes, running);
        ``keep_tail``: a last, partial file's rows stay held (for the day's next rows) when the day fills at least
        one file."""
        pieces = self._pending.pop(day)
        del self._pending_bytes[day]
        table = _in_time_order(pieces)
        for piece in pieces:
            piece.held.days -= 1
            if not piece.held.days:
                self._buffered -= piece.held.nbytes
        del pieces
        full = table.num_rows - table.num_rows % self.file_rows
        if keep_tail and full and full < table.num_rows:
            # a copy: a slice would pin the whole day (indices from numpy: from a range, pyarrow builds them in Python)
            self._hold(table.take(pa.array(np.arange(full, table.num_rows))), [(day, None)])
            table = table.slice(0, full)
        table = table.drop_columns([self.partition_column])
        parts = [table.slice(start, self.file_rows) for start in range(0, table.num_rows, self.file_rows)]
        first = len(self._staged)
        paths = [f"{self.partition_column}={day.isoformat()}/part-{first + k:05d}-{self.token}-c000."
                 f"{self.settings.compression}.parquet" for k in range(len(parts))]
        self._staged.extend(paths)
        self._write_staging_list()  # before the files: a file on disk is always listed
        self.fs.create_dir(paths[0].rpartition("/")[0], recursive=True)
        # encoded side by side (pyarrow encodes without the GIL)
        return [_FileWrite(path, day, _encoders().submit(self._write_file, path, part))
                for path, part in zip(paths, parts, strict=True)]

    def _write_file(self, path: str, part: pa.Table) -> tuple[int, str]:
        """Write one data file; its size and the add action's statistics (read from its footer)."""
        footer: list[pq.FileMetaData] = []
        # buffered: the Parquet writer's many small writes and position queries are otherwise one syscall each
        with pa.BufferedOutputStream(self.fs.open_output_stream(path), WRITE_BUFFER_BYTES) as sink:
            pq.write_table(part if part.schema.equals(self.file_schema) else part.cast(self.file_schema), sink,
                           metadata_collector=footer, **self._options)
            size = sink.tell()
        return size, file_stats(footer[0], self.settings.stats_columns)

    def _write_staging_list(self) -> None:
        self.fs.create_dir(STAGING_DIR, recursive=True)
        body = json.dumps({"version_before": self._version_before, "files": self._staged})
        with self.fs.open_output_stream(f"{self.staging_list}.tmp") as sink:  # replaced whole, never half-written
            sink.write(body.encode())
        self.fs.move(f"{self.staging_list}.tmp", self.staging_list)

    def committed(self) -> None:
        """The files are in the log now: forget the staging list (a leftover one is harmless, see module doc)."""
        _delete(self.fs, [self.staging_list])

    def abort(self) -> None:
        """The write failed: delete its files and staging list (what cannot be deleted now goes at the next
        write's :func:`clean_staging`)."""
        self._pending.clear()
        if self._staged and not _delete(self.fs, self._staged)[1]:  # the list stays while a file does
            _delete(self.fs, [self.staging_list])


def clean_staging(fs: pafs.FileSystem, committed_paths: Callable[[int | None], set[str] | None]) -> int:
    """Delete the files of writes that never committed (listed in ``_staging/``) and their lists; returns how many
    files went. ``committed_paths(version_before)``: the paths added to the log after that version (None when that
    cannot be told: the files are then left, only the list goes). Call it under the writers' lock."""
    try:
        listed = fs.get_file_info(pafs.FileSelector(STAGING_DIR, allow_not_found=True))
    except FileNotFoundError:
        return 0
    removed = 0
    for info in listed:
        if info.type != pafs.FileType.File:
            continue
        if not info.path.endswith(".json"):  # a list killed while being replaced: the one before it stands
            _delete(fs, [_relative(info.path)])
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                staged = json.loads(stream.read().decode())
        except (OSError, ValueError):
            staged = {"files": []}
        files = list(staged.get("files") or [])
        committed = committed_paths(staged.get("version_before")) if files else set()
        leftovers = [] if committed is None or committed & set(files) else files
        deleted, failed = _delete(fs, leftovers)
        removed += deleted
        if not failed:  # the list stays while a file does: the next write tries again
            _delete(fs, [_relative(info.path)])
        if deleted:
            log.warning("removed %d data file(s) of an uncommitted lake write (%s)", deleted, info.path)
    return removed


def _encoders() -> ThreadPoolExecutor:
    """The process's threads encoding data files (a forked child makes its own)."""
    pool = _pools.get(os.getpid())
    if pool is None:
        pool = _pools[os.getpid()] = ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="lake-encode")
    return pool


def _relative(path: str) -> str:
    return path if path.startswith(STAGING_DIR) else path[path.index(STAGING_DIR):]


def _delete(fs: pafs.FileSystem, paths: list[str]) -> tuple[int, int]:
    """Delete ``paths`` (missing ones are fine); returns how many were deleted and how many could not be. Errors
    are logged, not raised: a cleanup that cannot finish now is finished by the next write."""
    deleted = failed = 0
    for path in paths:
        try:
            fs.delete_file(path)
            deleted += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed += 1
            log.warning("could not delete staged lake file %s: %s", path, exc)
    return deleted, failed


def _by_day(rows: pa.Table, partition_column: str) -> list[tuple[date, pa.Array | None]]:
    """The days of ``rows``, each with the row numbers of its rows, in their order (None: the rows are all of one
    day, as a backlog in time order comes). Nothing is copied: a day's rows are gathered from their batches, in
    time order, when its files are written (``_in_time_order``)."""
    days = rows.column(partition_column)
    low, high = (value.as_py() for value in pc.min_max(days).values())
    if low == high:
        return [(low, None)]
    order = pc.sort_indices(days)  # stable: each day's rows keep their order
    pieces, start = [], 0
    for run in pc.value_counts(days.take(order)).to_pylist():
        pieces.append((run["values"], order.slice(start, run["counts"])))
        start += run["counts"]
    return pieces


def _in_time_order(pieces: list[_Piece]) -> pa.Table:
    """A day's rows from its pieces, sorted by time: gathered in one copy, or none when its batches are all its and
    already in time order (a backlog in time order: its batches are taken as they are)."""
    batches = pa.concat_tables([piece.held.rows for piece in pieces])  # no copy: their chunks, side by side
    times = batches.column(TIME_COLUMN)
    if all(piece.index is None for piece in pieces):
        return batches if _ascending(times) else batches.take(pc.sort_indices(times))
    index, offset = [], 0
    for piece in pieces:
        rows = piece.held.rows.num_rows
        index.append(np.arange(offset, offset + rows) if piece.index is None
                     else piece.index.to_numpy().astype(np.int64) + offset)
        offset += rows
    rows_of_day = np.concatenate(index)
    order = pc.sort_indices(times.take(rows_of_day)).to_numpy()  # stable: rows of one time keep their order
    return batches.take(rows_of_day[order])


def _ascending(column: pa.ChunkedArray) -> bool:
    """Whether ``column`` (no nulls) never decreases."""
    if len(column) < 2:
        return True
    values = column.combine_chunks()
    return not pc.any(pc.less(values.slice(1), values.slice(0, len(values) - 1))).as_py()


def file_stats(footer: pq.FileMetaData, columns: tuple[str, ...]) -> str:
    """The add action's ``stats``: row count, and min/max/null count of ``columns`` (what delta-rs writes), from the
    statistics the file's footer holds for them (written as the settings say: ``stats_columns``)."""
    found: dict[str, list[pq.Statistics | None]] = {}
    for group in (footer.row_group(g) for g in range(footer.num_row_groups)):
        for column in (group.column(k) for k in range(group.num_columns)):
            if column.path_in_schema in columns:
                found.setdefault(column.path_in_schema, []).append(column.statistics if column.is_stats_set else None)
    minima, maxima, nulls = {}, {}, {}
    for name, groups in found.items():
        if any(stats is None for stats in groups):
            continue
        nulls[name] = sum(stats.null_count for stats in groups)
        bounded = [stats for stats in groups if stats.has_min_max]
        if bounded:
            minima[name], maxima[name] = _stat(min(s.min for s in bounded)), _stat(max(s.max for s in bounded))
    return json.dumps({"numRecords": footer.num_rows, "minValues": minima, "maxValues": maxima, "nullCount": nulls},
                      separators=(",", ":"))


def _stat(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value

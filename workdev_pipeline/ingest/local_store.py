"""The local warehouse's files: Parquet under ``<root>/platform_events/event_date=YYYY-MM-DD/`` (zstd; snappy for a
file of fewer than ``SMALL_FILE_ROWS`` rows, see there).

How a write stays exactly-once on a plain file system:

* a sweep writes its files into ``_staging/`` and renames each into its day as ``part-s<sweep id>.parquet``.
  The name is a function of the sweep alone, so a redone sweep (same id, same range) replaces its own files
  and can never add a second copy; before a redo, every file of that sweep is removed first;
* a day rebuild writes the whole new day into ``_staging/day-<date>-<token>/`` with a ``_COMMIT`` marker,
  then swaps directories (old day out to ``_trash/``, new day in). A crash between the two renames leaves
  the marker behind, and :meth:`LocalEventFiles.recover` (run before every operation, under the consumer's
  lock) finishes the swap. A staging directory without its marker is an unfinished write and is dropped.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workdev_pipeline.ingest.faults import crash_point
from workdev_pipeline.ingest.schema import WAREHOUSE_SCHEMA

TABLE = "platform_events"
COMMIT_MARKER = "_COMMIT"
ROW_GROUP_ROWS = 64_000
#: A file of fewer rows is a small file: written with snappy and without dictionary pages. Its cost is pyarrow's
#: per-column set-up, not its data: zstd creates a (de)compression context for every page (~10 us each, two pages a
#: column with dictionaries). Measured on ~500-row day files: write 1.1 ms instead of 2.0, read 0.5 ms instead of
#: 1.2 -- what a retention run over years of thin days pays per day, twice -- for 77 KiB instead of 47. Larger files
#: are zstd with dictionaries (a third smaller, and as fast or faster to write).
SMALL_FILE_ROWS = 4_096
#: The columns given statistics (min/max, null count): those a query can skip row groups by. Rows arrive in time
#: order, so only the instants cluster; the types are kept for small files. The others' min/max span every value
#: in a row group and prune nothing, and computing them costs ~13 % of a large file's write (strings compared value
#: by value: the JSON payloads, the ids, the enrichment's short strings).
STATISTICS_COLUMNS = ("event_type", "event_category", "timestamp", "ingested_at")
#: Threads syncing a batch of days' files and directories together: concurrent fsyncs share the file system's
#: journal commits, where one after another each waits for its own.
SYNC_THREADS = 16


def day_dir_name(day: date) -> str:
    return f"event_date={day.isoformat()}"


def parquet_writer(path: Path, rows: int | None = None) -> pq.ParquetWriter:
    """A writer of one of the warehouse's files (the warehouse schema, statistics on ``STATISTICS_COLUMNS``):
    zstd with dictionaries, or -- ``rows``, how many the file will hold when known, fewer than
    ``SMALL_FILE_ROWS`` -- snappy without."""
    small = rows is not None and rows < SMALL_FILE_ROWS
    return pq.ParquetWriter(path, WAREHOUSE_SCHEMA, compression="snappy" if small else "zstd",
                            use_dictionary=not small, write_statistics=list(STATISTICS_COLUMNS))


@dataclass
class DayFileWriter:
    """Streams one day's rows into one Parquet file, buffering up to a row group at a time. ``sync=False`` leaves
    the fsync to whoever swaps the file in (``LocalEventFiles.swap_in_days(..., synced=False)`` syncs a batch of
    days' files together before marking them); ``make_dir=False``: the file's directory exists already."""

    path: Path
    sync: bool = True
    make_dir: bool = True
    rows: int = 0
    _pending: list[pa.Table] = field(default_factory=list)
    _pending_rows: int = 0
    _writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self, last: bool = False) -> None:
        if not self._pending_rows:
            return
        if self._writer is None:
            if self.make_dir:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = parquet_writer(self.path, self._pending_rows if last else None)
        pending = self._pending[0] if len(self._pending) == 1 else pa.concat_tables(self._pending)
        self._writer.write_table(pending, row_group_size=ROW_GROUP_ROWS * 2)
        self._pending, self._pending_rows = [], 0

    def close(self) -> int:
        """Finish the file (fsynced unless ``sync`` is off); returns its size in bytes (0 when nothing was written)."""
        self._flush(last=True)
        if self._writer is None:
            return 0
        self._writer.close()
        if self.sync:
            fsync_file(self.path)
        return self.path.stat().st_size


class DaySplitter:
    """Routes rows to one writer per UTC day of their timestamp."""

    def __init__(self, path_for_day) -> None:  # path_for_day: Callable[[date], Path]
        self._path_for_day = path_for_day
        self.writers: dict[date, DayFileWriter] = {}

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        days = pc.cast(table.column("timestamp"), pa.date32())
        for day in pc.unique(days).to_pylist():
            part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
            writer = self.writers.get(day)
            if writer is None:
                writer = self.writers[day] = DayFileWriter(self._path_for_day(day))
            writer.write(part)

    def close(self) -> dict[date, tuple[int, int]]:
        """Close every file: {day: (rows, bytes)}."""
        return {day: (w.rows, w.close()) for day, w in self.writers.items()}


class LocalEventFiles:
    """The local warehouse's events table on disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.table_dir = self.root / TABLE
        self.staging_dir = self.root / "_staging"
        self.trash_dir = self.root / "_trash"

    # -- layout ------------------------------------------------------------------------------------
    def day_dir(self, day: date) -> Path:
        return self.table_dir / day_dir_name(day)

    def glob(self) -> str:
        """The DuckDB/Hive path of every file of the table."""
        return str(self.table_dir / "event_date=*" / "*.parquet")

    def days(self) -> list[date]:
        if not self.table_dir.is_dir():
            return []
        return sorted(date.fromisoformat(p.name.split("=", 1)[1]) for p in self.table_dir.glob("event_date=*")
                      if p.is_dir())

    def day_files(self, day: date) -> list[Path]:
        """The day's Parquet files, by name (a scan of the directory: ``Path.glob`` costs several times more, which
        a retention run rewriting thousands of small days pays for each)."""
        try:
            with os.scandir(self.day_dir(day)) as entries:
                return sorted(Path(e.path) for e in entries if e.name.endswith(".parquet"))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def day_bytes(self, day: date) -> int:
        """The size of the day's Parquet files (0 for a day without files)."""
        try:
            with os.scandir(self.day_dir(day)) as entries:
                return sum(e.stat().st_size for e in entries if e.name.endswith(".parquet"))
        except (FileNotFoundError, NotADirectoryError):
            return 0

    def ensure_writable(self) -> None:
        """Create the directories (raises PermissionError/OSError when the location is not writable)."""
        for d in (self.table_dir, self.staging_dir, self.trash_dir):
            d.mkdir(parents=True, exist_ok=True)

    # -- sweeps ------------------------------------------------------------------------------------
    @staticmethod
    def sweep_file_name(sweep_id: int) -> str:
        return f"part-s{sweep_id:012d}.parquet"

    def sweep_splitter(self, sweep_id: int) -> DaySplitter:
        staging = self.staging_dir / f"sweep-{sweep_id:012d}"
        shutil.rmtree(staging, ignore_errors=True)
        return DaySplitter(lambda day: staging / day_dir_name(day) / self.sweep_file_name(sweep_id))

    def remove_sweep_files(self, sweep_id: int) -> int:
        """Remove whatever an earlier attempt of this sweep published (before it is redone)."""
        removed = 0
        for path in self.table_dir.glob(f"event_date=*/{self.sweep_file_name(sweep_id)}"):
            path.unlink()
            removed += 1
        shutil.rmtree(self.staging_dir / f"sweep-{sweep_id:012d}", ignore_errors=True)
        return removed

    def publish_sweep(self, sweep_id: int, days: Iterable[date]) -> None:
        """Rename each staged day file of the sweep into its day (atomic per file; idempotent)."""
        staging = self.staging_dir / f"sweep-{sweep_id:012d}"
        for day in days:
            source = staging / day_dir_name(day) / self.sweep_file_name(sweep_id)
            target = self.day_dir(day) / self.sweep_file_name(sweep_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        fsync_dir(self.table_dir)
        shutil.rmtree(staging, ignore_errors=True)

    # -- day rebuilds ------------------------------------------------------------------------------
    def rebuild_dir(self, day: date) -> Path:
        path = self.staging_dir / f"day-{day.isoformat()}-{uuid.uuid4().hex[:12]}"
        try:
            os.mkdir(path)
        except FileNotFoundError:
            path.mkdir(parents=True)
        return path

    def swap_in(self, day: date, new_dir: Path) -> None:
        """Replace the day's directory with ``new_dir`` (which holds the complete new day)."""
        self.swap_in_days({day: new_dir})

    def _rename_in(self, day: date, new_dir: Path) -> None:
        """The swap itself: the old day out to ``_trash/``, the marked new one in, its marker dropped (``_trash/``
        and the table's directory exist: see :meth:`_swap_dirs`)."""
        target = self.day_dir(day)
        try:
            os.replace(target, self.trash_dir / f"{target.name}-{uuid.uuid4().hex[:12]}")
        except FileNotFoundError:  # a new day
            pass
        else:
            crash_point("after_swap_out")
        os.replace(new_dir, target)
        (target / COMMIT_MARKER).unlink(missing_ok=True)

    def _swap_dirs(self) -> None:
        """Make the directories a swap renames into (once per batch of days, not per day)."""
        for d in (self.table_dir, self.trash_dir):
            d.mkdir(parents=True, exist_ok=True)

    def _finish_swap(self, day: date, new_dir: Path) -> None:
        self._swap_dirs()
        self._rename_in(day, new_dir)
        fsync_dir(self.table_dir)
        shutil.rmtree(self.trash_dir, ignore_errors=True)

    def empty_trash(self) -> None:
        """Delete what ``_trash/`` holds (old day directories of plain files): one scan, unlink and rmdir per
        entry, where ``shutil.rmtree`` pays a dozen system calls and Python frames per directory -- thousands
        of days rewritten by a retention run fill it. Anything unexpected goes through ``shutil.rmtree``."""
        try:
            entries = list(os.scandir(self.trash_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    with os.scandir(entry.path) as inner:
                        for item in inner:
                            os.unlink(item.path)
                    os.rmdir(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                shutil.rmtree(entry.path, ignore_errors=True)

    # -- governance (retention, erasure): whole days removed, files carried into a rewritten day ----------
    def remove_days(self, days: Iterable[date]) -> list[date]:
        """Remove whole day directories, each atomically (renamed into ``_trash/``, then deleted); returns the
        days that existed. Call it under the consumer's lock (see :meth:`Ingestor.rewrite_days`)."""
        removed: list[date] = []
        for day in sorted(set(days)):
            target = self.day_dir(day)
            if target.is_dir():
                if not removed:
                    self.trash_dir.mkdir(parents=True, exist_ok=True)
                os.replace(target, self.trash_dir / f"{target.name}-{uuid.uuid4().hex[:12]}")
                removed.append(day)
        if removed:
            fsync_dir(self.table_dir)
        self.empty_trash()
        return removed

    def swap_in_days(self, new_dirs: Mapping[date, Path], *, synced: bool = True,
                     pool: Executor | None = None) -> None:
        """Replace several days' directories, each with the complete new day in its ``new_dirs`` entry: what
        :meth:`swap_in` does for one day, with the syncs shared. Every new directory is marked and synced before
        the first rename, so a crash anywhere leaves markers that :meth:`recover` finishes, as for one day.

        ``synced=False``: the new days' files were closed without an fsync (``DayFileWriter(sync=False)``); they are
        all fsynced here first, concurrently, and only then marked -- a marker never names a day whose files might
        not be whole on disk. One day's file syncs otherwise each wait for their own journal commit. ``pool``: the
        threads to sync with (a caller swapping batch after batch keeps one; by default a pool of this call's)."""
        if not new_dirs:
            return
        if pool is None:
            with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(new_dirs) * 2),
                                    thread_name_prefix="sync-day") as own:
                self.swap_in_days(new_dirs, synced=synced, pool=own)
            return
        if not synced:
            files = [e.path for d in new_dirs.values() for e in os.scandir(d) if e.is_file()]
            list(pool.map(fsync_path, files))
        for day, new_dir in new_dirs.items():
            _write_small_file(new_dir / COMMIT_MARKER, day.isoformat())
        list(pool.map(fsync_path, new_dirs.values()))
        self._swap_dirs()
        for day, new_dir in sorted(new_dirs.items()):
            self._rename_in(day, new_dir)
        fsync_dir(self.table_dir)
        self.empty_trash()

    @staticmethod
    def carry_over(path: Path, new_dir: Path) -> None:
        """Put the unchanged file ``path`` into a day being rewritten in ``new_dir`` (a hard link: no copy; a
        copy where the file system has no hard links). Files are never modified in place, so sharing is safe."""
        target = new_dir / path.name
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
            with open(target, "rb") as f:
                os.fsync(f.fileno())

    def recover(self) -> list[str]:
        """Finish or drop what a killed process left in staging; returns what was done (for the log)."""
        done: list[str] = []
        if self.staging_dir.is_dir():
            for path in sorted(self.staging_dir.iterdir()):
                marker = path / COMMIT_MARKER
                if path.name.startswith("day-") and marker.is_file():
                    day = date.fromisoformat(marker.read_text().strip())
                    self._finish_swap(day, path)
                    done.append(f"finished the swap of day {day}")
                elif not path.name.startswith("sweep-"):  # a sweep's staging is redone with its sweep
                    shutil.rmtree(path, ignore_errors=True)
                    done.append(f"dropped unfinished {path.name}")
        shutil.rmtree(self.trash_dir, ignore_errors=True)
        return done


def _write_small_file(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` (not synced): one open, write and close, without a Python file object."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Make a file's contents, or a directory's entries (renames, new files), durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_file = fsync_dir = fsync_path


def schema_problems(files: LocalEventFiles, day: date) -> list[str]:
    """How the files of ``day`` differ from the declared warehouse schema (empty when they all match)."""
    problems = []
    for path in files.day_files(day):
        schema = pq.read_schema(path)
        if not schema.equals(WAREHOUSE_SCHEMA, check_metadata=False):
            problems.append(f"{path.name}: {schema} differs from the declared schema")
    return problems

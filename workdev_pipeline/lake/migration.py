"""Import of an old-format Parquet warehouse directory into the lake (``workdev-pipeline lake import DIR``).

The old local warehouse kept ``DIR/platform_events/event_date=YYYY-MM-DD/*.parquet`` (the warehouse schema, JSON
columns as Arrow JSON extension or plain strings), plus ``DIR/_staging`` and ``DIR/_trash`` for its own swaps. A
day rebuild that was killed between its two renames left the complete new day in ``_staging/day-<date>-<token>/``
with a ``_COMMIT`` marker (the old format's recovery would have swapped it in): that directory is the day's content.
Unmarked staging directories (unfinished writes) and ``_trash`` are ignored.

Every batch of ``days_per_commit`` days is one predicate overwrite of exactly those days (``EventLake.replace_days``):
the lake's days become what the directory holds, other days are untouched, and re-running the import gives the same
table. Files are read a record batch at a time (bounded memory whatever the day's size).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from workdev_pipeline.errors import WorkdevError
from workdev_pipeline.ingest.schema import WAREHOUSE_SCHEMA
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.maintenance import DEFAULT_LOCK_TIMEOUT_SECONDS, LakeLock

TABLE_DIR = "platform_events"
DAY_PREFIX = "event_date="
COMMIT_MARKER = "_COMMIT"
#: Days per commit: a month of days at a time (one overwrite per batch keeps the log short and a failure local).
DAYS_PER_COMMIT = 31
READ_BATCH_ROWS = 65_536


class MigrationInputError(WorkdevError, ValueError):
    """The directory to import is not an old-format warehouse (or holds rows it cannot hold)."""


@dataclass
class ImportResult:
    """What one import did."""

    days: list[date] = field(default_factory=list)
    files: int = 0
    rows: int = 0
    bytes_read: int = 0
    commits: list[int] = field(default_factory=list)  # lake versions written
    skipped_days: list[date] = field(default_factory=list)  # already in the lake (``only_missing``)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        versions = f"version(s) {self.commits[0]}..{self.commits[-1]}" if self.commits else "no commit"
        skipped = f", {len(self.skipped_days)} day(s) already in the lake skipped" if self.skipped_days else ""
        return (f"imported {self.rows:,} rows of {len(self.days):,} day(s) from {self.files:,} file(s) "
                f"({self.bytes_read:,} bytes) in {len(self.commits)} commit(s), {versions}{skipped}; "
                f"{self.seconds:.2f} s")


def find_days(source: str | Path) -> dict[date, list[Path]]:
    """The old warehouse's days and their Parquet files (a day a killed swap left marked in ``_staging``: those
    files); raises :class:`MigrationInputError` when ``source`` is not such a directory or holds no day."""
    root = Path(source)
    if not root.is_dir():
        raise MigrationInputError(f"{source}: no such directory")
    table_dir = root / TABLE_DIR
    if not table_dir.is_dir():
        raise MigrationInputError(f"{source}: no {TABLE_DIR}/ directory (expected "
                                  f"{TABLE_DIR}/{DAY_PREFIX}YYYY-MM-DD/*.parquet)")
    days: dict[date, list[Path]] = {}
    for entry in sorted(table_dir.iterdir()):
        if entry.is_dir() and entry.name.startswith(DAY_PREFIX):
            days[_day(entry.name.removeprefix(DAY_PREFIX), entry)] = _parquet_files(entry)
    staging = root / "_staging"
    if staging.is_dir():
        for entry in sorted(staging.iterdir()):
            marker = entry / COMMIT_MARKER
            if entry.name.startswith("day-") and marker.is_file():
                days[_day(marker.read_text().strip(), marker)] = _parquet_files(entry)
    if not days:
        raise MigrationInputError(f"{source}: no day directories in {TABLE_DIR}/ (expected "
                                  f"{DAY_PREFIX}YYYY-MM-DD/*.parquet)")
    return days


def import_warehouse(source: str | Path, lake: EventLake, *, database_url: str | None = None,
                     consumer: str = "lake", days_per_commit: int = DAYS_PER_COMMIT, only_missing: bool = False,
                     lock_timeout_seconds: float | None = DEFAULT_LOCK_TIMEOUT_SECONDS) -> ImportResult:
    """Import the old warehouse at ``source`` into ``lake``: each batch of days one predicate overwrite of exactly
    those days, under the lake writers' lock when ``database_url`` is given. ``only_missing``: leave the days the
    lake holds already (e.g. swept since) as they are."""
    started = time.perf_counter()
    if days_per_commit < 1:
        raise MigrationInputError(f"days per commit must be at least 1, not {days_per_commit}")
    days = find_days(source)
    for day, files in days.items():
        for path in files:
            _check_file(path, day)
    result = ImportResult()
    if only_missing:
        present = set(lake.snapshot().days())
        result.skipped_days = sorted(d for d in days if d in present)
        days = {d: f for d, f in days.items() if d not in present}
    ordered = sorted(days)
    with LakeLock(database_url, consumer=consumer, timeout_seconds=lock_timeout_seconds) as lock:
        for start in range(0, len(ordered), days_per_commit):
            batch = ordered[start:start + days_per_commit]
            failures: list[MigrationInputError] = []
            with lock.held():
                try:
                    commit = lake.replace_days(batch, _tables({d: days[d] for d in batch}, result, failures))
                except Exception:
                    if failures:  # raised while delta-rs read the rows: it comes back wrapped in a DeltaError
                        raise failures[0] from None
                    raise
            if commit.version is not None:
                result.commits.append(commit.version)
            result.rows += commit.rows
            result.days.extend(batch)
    result.seconds = time.perf_counter() - started
    return result


# -- reading the old files -------------------------------------------------------------------------------------------

def _day(text: str, where: Path) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise MigrationInputError(f"{where}: {text!r} is not a date (YYYY-MM-DD)") from None


def _parquet_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(".parquet"))


def _check_file(path: Path, day: date) -> None:
    """Fail before anything is written when a file is not Parquet, lacks a required column, or its statistics show
    rows of another day."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MigrationInputError(f"{path}: not a readable Parquet file ({exc})") from None
    names = set(parquet.schema_arrow.names)
    missing = [f.name for f in WAREHOUSE_SCHEMA if not f.nullable and f.name not in names]
    if missing:
        raise MigrationInputError(f"{path}: no column {', '.join(missing)} (not a warehouse file)")
    column = parquet.schema_arrow.get_field_index("timestamp")
    metadata = parquet.metadata
    leaf = next((i for i in range(metadata.num_columns) if metadata.schema.column(i).path == "timestamp"), None)
    if leaf is None or column < 0:
        return
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            continue
        low, high = _utc_day(stats.min), _utc_day(stats.max)
        if low is not None and high is not None and (low != day or high != day):
            raise MigrationInputError(f"{path}: holds rows of {low}..{high} in the directory of {day} "
                                      "(a day directory holds the rows of its UTC day only)")


def _utc_day(value: object) -> date | None:
    """The UTC day of a statistics value (naive instants are UTC in the warehouse)."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo is not None else value).date()
    return None


def _tables(days: dict[date, Sequence[Path]], result: ImportResult,
            failures: list[MigrationInputError]) -> Iterator[pa.Table]:
    """The rows of ``days``' files in the warehouse schema, a record batch at a time (a bad file's error is also put
    in ``failures``: the writer reading this stream reports it wrapped in its own)."""
    try:
        yield from _rows(days, result)
    except MigrationInputError as exc:
        failures.append(exc)
        raise


def _rows(days: dict[date, Sequence[Path]], result: ImportResult) -> Iterator[pa.Table]:
    for day, files in days.items():
        for path in files:
            result.files += 1
            result.bytes_read += path.stat().st_size
            for batch in _batches(path):
                table = warehouse_rows(batch, path)
                rows_days = pc.unique(pc.cast(table.column("timestamp"), pa.date32())).to_pylist()
                if any(d != day for d in rows_days):
                    raise MigrationInputError(f"{path}: holds rows of {', '.join(map(str, sorted(rows_days)))} in the "
                                              f"directory of {day}")
                yield table


def _batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS)
    except (pa.ArrowInvalid, OSError) as exc:
        raise MigrationInputError(f"{path}: not a readable Parquet file ({exc})") from None


def warehouse_rows(batch: pa.RecordBatch | pa.Table, path: Path | str = "<rows>") -> pa.Table:
    """``batch`` (an old warehouse file's rows) in ``WAREHOUSE_SCHEMA``: columns by name, JSON columns from the
    extension type or plain strings, other types cast; a missing nullable column is null."""
    n = batch.num_rows
    columns: list[pa.Array] = []
    for target in WAREHOUSE_SCHEMA:
        extension = isinstance(target.type, pa.BaseExtensionType)
        storage_type = target.type.storage_type if extension else target.type
        index = batch.schema.get_field_index(target.name)
        if index < 0:
            if not target.nullable:
                raise MigrationInputError(f"{path}: no column {target.name}")
            column: pa.Array | pa.ChunkedArray = pa.nulls(n, storage_type)
        else:
            column = batch.column(index)
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            if isinstance(column.type, pa.BaseExtensionType):
                column = column.storage
            try:
                column = column.cast(storage_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise MigrationInputError(f"{path}: column {target.name} ({column.type}) cannot be read as "
                                          f"{storage_type}: {exc}") from None
        if extension:
            column = pa.ExtensionArray.from_storage(target.type, column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=WAREHOUSE_SCHEMA)

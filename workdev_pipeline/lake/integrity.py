"""Whether the lake's data files can be read: a quick mode (each file's footer, and its row count against the
log's) and a deep one that decodes every column of every row group (with page checksums verified where the file
has them), and the error that makes a governance operation refuse a damaged day."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from workdev_pipeline.errors import OperationFailed
from workdev_pipeline.lake.events import PARTITION_COLUMN, LakeSnapshot

#: Rows decoded at a time by the deep mode (memory stays at one batch of one file).
DECODE_BATCH_ROWS = 64 * 1024


def rebuild_command(day: date) -> str:
    """The command that writes ``day`` anew from PostgreSQL."""
    return f"workdev-pipeline rebuild --from {day.isoformat()}"


@dataclass(frozen=True)
class DamagedFile:
    """A data file of the lake that cannot be read (``path`` relative to the table)."""

    day: date
    path: str
    error: str

    @property
    def fix(self) -> str:
        return rebuild_command(self.day)

    def as_metadata(self) -> dict[str, str]:
        return {"day": self.day.isoformat(), "file": self.path, "error": self.error, "fix": self.fix}


class LakeDamaged(OperationFailed):
    """Days of the lake hold files that cannot be read: the operation refused to touch them (the CLI prints it as
    one line, exit status 1)."""

    def __init__(self, operation: str, damaged: list[DamagedFile]) -> None:
        self.damaged = damaged
        days = sorted({d.day for d in damaged})
        first = damaged[0]
        fixes = "; ".join(rebuild_command(d) for d in days[:5]) + ("; ..." if len(days) > 5 else "")
        super().__init__(f"{operation} refused: {len(damaged)} damaged lake file(s) on {len(days)} day(s), e.g. "
                         f"{first.path} ({first.error}); repair with `{fixes}` and run it again")


def damaged_files(snapshot: LakeSnapshot, days: Iterable[date] | None = None, *, deep: bool = True,
                  paths: Collection[str] | None = None) -> list[DamagedFile]:
    """The snapshot's data files (of ``days``; every day when None; only ``paths`` when given) that cannot be read:
    a footer that does not parse, a row count other than the log's, and (``deep``) any page of any column that
    does not decode."""
    if snapshot.table is None:
        return []
    files = snapshot.files()
    if days is not None:
        wanted = sorted(set(days))
        files = files.filter(pc.is_in(files.column(PARTITION_COLUMN), value_set=pa.array(wanted, pa.date32())))
    if paths is not None:
        files = files.filter(pc.is_in(files.column("path"), value_set=pa.array(sorted(paths), pa.string())))
    fs = snapshot.lake.filesystem()
    damaged = []
    for path, day, records in zip(files.column("path").to_pylist(), files.column(PARTITION_COLUMN).to_pylist(),
                                  files.column("num_records").to_pylist(), strict=True):
        error = _read_error(fs, unquote(path), records, deep)
        if error is not None:
            damaged.append(DamagedFile(day, path, error))
    return damaged


def require_intact(snapshot: LakeSnapshot, days: Iterable[date] | None, operation: str, *,
                   deep: bool = True, paths: Collection[str] | None = None) -> None:
    """Raise :class:`LakeDamaged` when a file of ``days`` (only ``paths`` when given) cannot be read."""
    if paths is not None and not paths:
        return
    damaged = damaged_files(snapshot, days, deep=deep, paths=paths)
    if damaged:
        raise LakeDamaged(operation, damaged)


def diagnose(snapshot: LakeSnapshot, days: Iterable[date] | None, operation: str, error: BaseException, *,
             paths: Collection[str] | None = None) -> None:
    """After ``error`` reading ``days`` (only ``paths`` when given): raise :class:`LakeDamaged` (from it) when a
    file of theirs is damaged; return when none is (the error was something else: the caller raises it)."""
    if paths is not None and not paths:
        return
    damaged = damaged_files(snapshot, days, deep=True, paths=paths)
    if damaged:
        raise LakeDamaged(operation, damaged) from error


def _read_error(fs: pafs.FileSystem, path: str, records: int | None, deep: bool) -> str | None:
    try:
        with fs.open_input_file(path) as source:
            parquet = pq.ParquetFile(source, page_checksum_verification=True)
            rows = parquet.metadata.num_rows
            if records is not None and rows != records:
                return f"holds {rows} rows where the log records {records}"
            if deep:
                decoded = sum(batch.num_rows for batch in parquet.iter_batches(batch_size=DECODE_BATCH_ROWS))
                if decoded != rows:
                    return f"decoded {decoded} of its {rows} rows"
    except Exception as exc:  # any failure to read is the finding
        return f"{type(exc).__name__}: {exc}"[:300]
    return None


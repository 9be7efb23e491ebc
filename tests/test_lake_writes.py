"""The lake's writes: bounded memory whatever the backlog's shape, one commit per write, nothing staged left
behind by a write that failed or was killed, and every writer's files encoded as ``lake/parquet_settings.py`` says."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.lake_helpers import events
from workdev_pipeline.aggregations.engine import Aggregator
from workdev_pipeline.aggregations.periods import HOURLY
from workdev_pipeline.lake.day_files import FILE_ROWS, STAGING_DIR, DayFileWriter, _stat
from workdev_pipeline.lake.events import LAKE_SCHEMA, PARTITION_COLUMN, EventLake, to_lake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.lake.maintenance import maintain
from workdev_pipeline.lake.parquet_settings import (
    FILE_SETTINGS,
    STATS_COLUMNS,
    WIDE_FILE_SETTINGS,
    WIDE_WRITE_DAYS,
    FileSettings,
)

REPO = Path(__file__).resolve().parent.parent
FIRST = date(2026, 1, 1)
BUDGET = 1024 * 1024


def thin_backlog(days: int, per_day: int, batches: int) -> Iterator[pa.Table]:
    """``batches`` tables, each holding ``per_day`` events of every one of ``days`` days (a history import)."""
    for b in range(batches):
        yield pa.concat_tables([events(FIRST + timedelta(days=d), per_day, start=b * per_day) for d in range(days)])


def data_files(root: Path) -> set[str]:
    table = root / "platform_events"
    return {str(p.relative_to(table)) for p in table.glob("event_date=*/*.parquet")}


def logged_files(lake: EventLake) -> set[str]:
    return set(lake.snapshot().files().column("path").to_pylist())


def staging_lists(root: Path) -> list[Path]:
    return sorted((root / "platform_events" / STAGING_DIR).glob("*.json"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def test_a_thin_backlog_is_written_within_the_memory_budget_in_one_commit(root: Path) -> None:
    lake = EventLake(LakeLocation.from_env(str(root)), write_budget_bytes=BUDGET)
    tables = list(thin_backlog(days=40, per_day=60, batches=8))  # 19,200 events, ~8x the budget in Arrow bytes
    largest = max(t.nbytes for t in tables)
    assert sum(t.nbytes for t in tables) > 5 * BUDGET
    commit = lake.append(tables, app_id="lake", version=1)

    # the old writer held every day until the commit: here at most the budget plus the batch that crossed it
    assert commit.peak_buffered_bytes <= BUDGET + 2 * largest, commit.peak_buffered_bytes
    assert commit.files > 40  # days were written out before the end
    assert commit.version == 1 and lake.committed_version("lake") == 1  # still one commit, its transaction kept
    assert commit.rows == 19_200 and set(commit.days.values()) == {480}
    assert logged_files(lake) == data_files(root)
    held = lake.snapshot().query("SELECT event_date, count(*), count(DISTINCT event_id) FROM platform_events "
                                 "GROUP BY 1 ORDER BY 1")
    assert held == [(FIRST + timedelta(days=d), 480, 480) for d in range(40)]
    # the add actions' statistics prune correctly (delta-rs skips files by them)
    noon = datetime.combine(FIRST, datetime.min.time(), UTC) + timedelta(hours=12)
    dataset = lake.snapshot().dataset()
    assert dataset.count_rows(filter=ds.field("timestamp") < pa.scalar(noon, pa.timestamp("us", tz="UTC"))) == 480


def test_a_batch_of_several_days_is_held_whole_until_each_of_its_days_is_written(tmp_path: Path) -> None:
    """A day's rows are not copied out of their batch when it comes (only once, in time order, into the day's
    files): the batch stays held, and counts against the budget whole, until its last day is written out."""
    first, second = FIRST, FIRST + timedelta(days=1)
    mixed = to_lake(pa.concat_tables([events(first, 900), events(second, 100)]))
    more = to_lake(events(first, 900, start=900))
    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    writer = DayFileWriter(fs, schema=LAKE_SCHEMA, partition_column=PARTITION_COLUMN, settings=FILE_SETTINGS,
                           budget_bytes=mixed.nbytes * 3 // 2, file_rows=500)
    writer.add(mixed)
    assert not writer.actions
    # over the budget: the first day's full files go out, and since the first batch is still held for the second
    # day, that day goes out too (its 100 rows alone would have fitted)
    writer.add(more)
    written = [(action.partition_values[PARTITION_COLUMN], json.loads(action.stats)["numRecords"])
               for action in writer.actions]
    assert written == [(first.isoformat(), 500)] * 3 + [(second.isoformat(), 100)]
    assert writer.stats.peak_buffered_bytes == mixed.nbytes + more.nbytes
    writer.finish()  # the first day's last 300 rows, held as a copy of their own
    assert [json.loads(action.stats)["numRecords"] for action in writer.actions[4:]] == [300]
    times = pa.concat_tables(pq.read_table(tmp_path / action.path).select(["timestamp"])
                             for action in writer.actions[:3] + writer.actions[4:]).column("timestamp")
    assert times.to_pylist() == sorted(times.to_pylist()) and len(times) == 1800


def test_replacing_days_writes_within_the_budget_and_empties_days_without_rows(root: Path) -> None:
    lake = EventLake(LakeLocation.from_env(str(root)), write_budget_bytes=BUDGET)
    lake.append(thin_backlog(days=5, per_day=100, batches=2), app_id="lake", version=1)
    days = [FIRST + timedelta(days=d) for d in range(3)]
    commit = lake.replace_days(days, [events(days[0], 7), events(days[2], 9)])
    assert commit.version == 2 and commit.days == {days[0]: 7, days[1]: 0, days[2]: 9}
    held = dict(lake.snapshot().query("SELECT event_date, count(*) FROM platform_events GROUP BY 1"))
    assert held == {days[0]: 7, days[2]: 9, FIRST + timedelta(days=3): 200, FIRST + timedelta(days=4): 200}


def test_a_failed_write_deletes_what_it_staged(root: Path) -> None:
    lake = EventLake(LakeLocation.from_env(str(root)), write_budget_bytes=BUDGET)
    lake.append([events(FIRST, 10)], app_id="lake", version=1)
    committed = data_files(root)

    def failing() -> Iterator[pa.Table]:
        yield from thin_backlog(days=40, per_day=60, batches=4)  # enough to write files before the failure
        raise RuntimeError("the source went away")

    with pytest.raises(RuntimeError, match="the source went away"):
        lake.append(failing(), app_id="lake", version=2)
    assert data_files(root) == committed == logged_files(lake)
    assert not staging_lists(root)
    assert lake.version() == 1


KILLED_WRITE = """
import os, signal, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests.lake_helpers import events
from tests.test_lake_writes import thin_backlog
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation

def tables():
    yield from thin_backlog(days=40, per_day=60, batches=4)
    while len(list(Path(sys.argv[1]).glob("platform_events/event_date=*/*.parquet"))) < 3:  # the writer is behind
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)  # as an OOM killer would, mid-write, files already written

EventLake(LakeLocation.from_env(sys.argv[1]), write_budget_bytes=int(sys.argv[3])).append(
    tables(), app_id="lake", version=2)
"""


@pytest.mark.parametrize("next_operation", ["write", "maintenance"])
def test_files_of_a_killed_write_are_removed_by_the_next_operation(root: Path, next_operation: str) -> None:
    lake = EventLake(LakeLocation.from_env(str(root)), write_budget_bytes=BUDGET)
    lake.append([events(FIRST, 10)], app_id="lake", version=1)
    committed = data_files(root)
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(root), str(REPO), str(BUDGET)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert data_files(root) - committed and staging_lists(root)  # what the killed write left

    if next_operation == "write":
        lake.append([events(FIRST, 5, start=100)], app_id="lake", version=2)
    else:
        assert "uncommitted write" in " ".join(maintain(lake).notes)
    assert data_files(root) == logged_files(lake)
    assert not staging_lists(root)
    expected = 15 if next_operation == "write" else 10
    assert lake.snapshot().query("SELECT count(*) FROM platform_events")[0][0] == expected


def test_a_staging_list_left_after_its_commit_keeps_the_committed_files(root: Path) -> None:
    """Killed between its commit and dropping its list: the next write drops only the list."""
    lake = EventLake(LakeLocation.from_env(str(root)), write_budget_bytes=BUDGET)
    lake.append([events(FIRST, 10)], app_id="lake", version=1)
    lake.append([events(FIRST, 10, start=10)], app_id="lake", version=2)
    second = sorted(logged_files(lake) - set(lake.snapshot(1).files().column("path").to_pylist()))
    staging = root / "platform_events" / STAGING_DIR
    (staging / "left.json").write_text(json.dumps({"version_before": 1, "files": second}))
    assert lake.clean_staging() == 0
    assert not staging_lists(root)
    assert lake.snapshot().query("SELECT count(*) FROM platform_events")[0][0] == 20
    assert pc.sum(lake.snapshot().files().column("num_records")).as_py() == 20


def encoding_mismatches(path: Path, settings: FileSettings, rows: int, *, delta_rs: bool = False) -> list[str]:
    """How the Parquet file at ``path`` (``rows`` rows) differs from ``settings``: codec, dictionary pages and
    footer statistics of every column of every row group, and the row groups' sizes. ``delta_rs``: written by
    delta-rs, which compresses every column alike."""
    meta = pq.ParquetFile(path).metadata
    wrong = []
    if meta.num_rows != rows:
        wrong.append(f"{meta.num_rows} rows")
    expected_groups = [min(settings.row_group_rows, rows - start) for start in range(0, rows, settings.row_group_rows)]
    if [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] != expected_groups:
        wrong.append(f"row groups of {[meta.row_group(g).num_rows for g in range(meta.num_row_groups)]} rows")
    table = pq.read_table(path)
    empty = {name for name in table.column_names if table.column(name).null_count == table.num_rows}
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            column = meta.row_group(g).column(c)
            top = column.path_in_schema.split(".")[0]
            codec = "UNCOMPRESSED" if top in settings.uncompressed_columns and not delta_rs else settings.compression
            if column.compression != codec.upper():
                wrong.append(f"{column.path_in_schema}: {column.compression}")
            # (Parquet has no dictionary encoding for booleans: amount_overflow never has one; for a column of nulls
            # only -- amount in files of non-financial events -- pyarrow writes none, delta-rs an empty one)
            dictionary = settings.dictionary(top) and column.physical_type != "BOOLEAN"
            if top not in empty and column.has_dictionary_page != dictionary:
                wrong.append(f"{column.path_in_schema}: dictionary {column.has_dictionary_page}")
            if column.is_stats_set != (top in settings.stats_columns):
                wrong.append(f"{column.path_in_schema}: statistics {column.is_stats_set}")
    return sorted(set(wrong))


def day_files(lake: EventLake, root: Path, day: date) -> list[tuple[Path, int]]:
    """The day's data files and their rows."""
    files = lake.snapshot().files().to_pylist()
    return [(root / "platform_events" / f["path"], f["num_records"]) for f in files if f["event_date"] == day]


def day_mismatches(lake: EventLake, root: Path, day: date, settings: FileSettings, *,
                   delta_rs: bool = False) -> list[str]:
    return sorted({w for path, rows in day_files(lake, root, day)
                   for w in encoding_mismatches(path, settings, rows, delta_rs=delta_rs)})


def test_every_writer_encodes_the_files_as_the_settings_say(root: Path) -> None:
    """The sweep's pyarrow writer, the compaction's re-sort and delta-rs's deletes (one day; many days: the wide
    settings); the lake's own files are single row groups of at most FILE_ROWS rows, delta-rs's of 128 Ki rows."""
    assert {"timestamp", "event_type"} <= set(FILE_SETTINGS.stats_columns) == set(STATS_COLUMNS)
    assert not FILE_SETTINGS.dictionary("event_id") and FILE_SETTINGS.dictionary("user_id")
    assert "event_type" in FILE_SETTINGS.uncompressed_columns and "event_data" not in FILE_SETTINGS.uncompressed_columns
    lake = EventLake(LakeLocation.from_env(str(root)))
    rows = 2 * FILE_ROWS + 1_000
    lake.append([events(FIRST, rows)], app_id="lake", version=1)
    assert [n for _, n in day_files(lake, root, FIRST)] == [FILE_ROWS, FILE_ROWS, 1_000]
    assert day_mismatches(lake, root, FIRST, FILE_SETTINGS) == []

    lake.append([events(FIRST, 1_000, start=rows)], app_id="lake", version=2)
    assert maintain(lake).files_after == 3  # the re-sort: 4,096 + 4,096 + 2,000 rows
    rows += 1_000
    assert day_mismatches(lake, root, FIRST, FILE_SETTINGS) == []

    rows -= lake.delete(f"event_date = '{FIRST.isoformat()}' AND user_tenure_days = 1", days=1)["num_deleted_rows"]
    assert day_mismatches(lake, root, FIRST, FILE_SETTINGS, delta_rs=True) == []

    wide = lake.delete(f"event_date = '{FIRST.isoformat()}' AND user_tenure_days = 2", days=WIDE_WRITE_DAYS + 1)
    rows -= wide["num_deleted_rows"]
    assert day_mismatches(lake, root, FIRST, WIDE_FILE_SETTINGS, delta_rs=True) == []
    assert lake.snapshot().query("SELECT count(*) FROM platform_events")[0][0] == rows


def test_each_add_action_holds_its_files_size_and_statistics(root: Path) -> None:
    """The log's size and statistics of each file (taken from the file's footer as it is written) are those of the
    file read back -- also for files of several row groups, a column with nulls, and a row group of nulls only."""
    columns = (*STATS_COLUMNS, "user_tenure_days")
    settings = replace(FILE_SETTINGS, row_group_rows=1_000, stats_columns=columns)
    lake = EventLake(LakeLocation.from_env(str(root)), file_settings=settings, file_rows=2_500)
    rows = events(FIRST, 6_000)
    numbers = range(rows.num_rows)
    tenure = pa.array([None if i < 1_000 or i % 7 == 0 else i % 400 for i in numbers], pa.int32())
    rows = rows.set_column(rows.schema.get_field_index("user_tenure_days"), "user_tenure_days", tenure)
    order = sorted(numbers, key=lambda i: (i * 7_919) % rows.num_rows)  # out of time order
    lake.append([rows.take(pa.array(order))], app_id="lake", version=1)

    log = root / "platform_events" / "_delta_log" / f"{1:020d}.json"
    adds = [json.loads(line)["add"] for line in log.read_text().splitlines() if '"add"' in line]
    assert sorted(json.loads(a["stats"])["numRecords"] for a in adds) == [1_000, 2_500, 2_500]
    for add in adds:
        path = root / "platform_events" / unquote(add["path"])
        table = pq.read_table(path)
        assert add["size"] == path.stat().st_size
        assert pq.ParquetFile(path).metadata.num_row_groups == -(-table.num_rows // 1_000)
        bounds = {name: pc.min_max(table.column(name)).as_py() for name in columns}
        assert json.loads(add["stats"]) == {
            "numRecords": table.num_rows,
            "minValues": {n: _stat(b["min"]) for n, b in bounds.items() if b["min"] is not None},
            "maxValues": {n: _stat(b["max"]) for n, b in bounds.items() if b["max"] is not None},
            "nullCount": {name: table.column(name).null_count for name in columns}}
    first = min(adds, key=lambda a: json.loads(a["stats"])["minValues"]["timestamp"])
    assert json.loads(first["stats"])["nullCount"]["user_tenure_days"] == 1_000 + 215  # a row group of nulls


def test_a_compacted_day_still_reads_whole(root: Path) -> None:
    """delta-rs's compaction of files without footer statistics commits null min/max in the log, and readers
    through the Arrow dataset (the aggregations) then prune the whole day (delta-rs #3173)."""
    lake = EventLake(LakeLocation.from_env(str(root)))
    for i in range(4):
        lake.append([events(FIRST, 500, start=500 * i)], app_id="lake", version=i + 1)
    assert maintain(lake).files_after == 1
    midnight = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=UTC)
    hours, files = Aggregator(lake).compute(HOURLY, midnight, midnight + timedelta(days=1), {})
    assert files == 1 and pc.sum(hours.column("total_events")).as_py() == 2_000
    day = (ds.field("timestamp") >= midnight) & (ds.field("timestamp") < midnight + timedelta(days=1))
    assert lake.snapshot().dataset([FIRST]).count_rows(filter=day) == 2_000


def test_a_file_that_fails_while_the_next_days_files_are_written_leaves_nothing_after_abort(tmp_path: Path) -> None:
    """Days are written out in turn, a day's rows gathered while the day before it is encoded: a file that fails
    raises only once the files in flight are finished, so that abort() deletes every file of the write."""
    days = [FIRST + timedelta(days=d) for d in range(3)]
    failed, second_day_started, aborted = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    class FailingOnTheFirstDay(DayFileWriter):
        def _write_file(self, path: str, part: pa.Table) -> tuple[int, str]:
            if path.startswith(f"event_date={days[0].isoformat()}/part-00000-"):  # the first day's first file
                assert second_day_started.wait(10), "the second day's files were not written beside the first's"
                failed.set()
                raise OSError(28, "No space left on device")
            if days[1].isoformat() not in path:
                return super()._write_file(path, part)
            second_day_started.set()
            assert failed.wait(60)
            aborted.wait(1)  # an abort() that came meanwhile would be seen to come before the file
            written = super()._write_file(path, part)
            order.append("second day's file")
            return written

        def abort(self) -> None:
            order.append("abort")
            aborted.set()
            super().abort()

    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    writer = FailingOnTheFirstDay(fs, schema=LAKE_SCHEMA, partition_column=PARTITION_COLUMN,
                                  settings=FILE_SETTINGS, budget_bytes=BUDGET, file_rows=100)
    writer.add(to_lake(pa.concat_tables([events(day, 250) for day in days])))
    with pytest.raises(OSError, match="No space left"):
        writer.finish()
    writer.abort()
    assert order == ["second day's file"] * 3 + ["abort"]  # the second day's files in flight finish first
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.json"))


def test_a_day_that_cannot_be_gathered_while_files_are_in_flight_leaves_nothing_after_abort(tmp_path: Path) -> None:
    """The error is raised only once the day before's files are written: abort() comes after every one of them."""
    days = [FIRST + timedelta(days=d) for d in range(3)]
    gather_failed, aborted = threading.Event(), threading.Event()
    order: list[str] = []

    class FailingToGatherTheSecondDay(DayFileWriter):
        def _flush(self, day: date, *, keep_tail: bool = False) -> list:
            if day == days[1]:
                gather_failed.set()
                raise MemoryError("no memory for the day's rows")
            return super()._flush(day, keep_tail=keep_tail)

        def _write_file(self, path: str, part: pa.Table) -> tuple[int, str]:
            assert gather_failed.wait(60)  # the first day's files are still being written when the second fails
            aborted.wait(1)  # an abort() that came meanwhile would be seen to come before the file
            written = super()._write_file(path, part)
            order.append("file")
            return written

        def abort(self) -> None:
            order.append("abort")
            aborted.set()
            super().abort()

    fs = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    writer = FailingToGatherTheSecondDay(fs, schema=LAKE_SCHEMA, partition_column=PARTITION_COLUMN,
                                         settings=FILE_SETTINGS, budget_bytes=BUDGET, file_rows=100)
    writer.add(to_lake(pa.concat_tables([events(day, 250) for day in days])))
    with pytest.raises(MemoryError):
        writer.finish()
    writer.abort()
    assert order == ["file"] * 3 + ["abort"]  # the first day's three files, then the abort
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.json"))

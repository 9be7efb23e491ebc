"""The lake's file layout: each day in files of at most ``file_rows`` rows in time order (whatever order the rows
come in), replaced file by file in one commit (``EventLake.replace_files``), and re-sorted into that layout by
maintenance when sweeps or delta-rs's own writes leave it otherwise."""

from __future__ import annotations

import json
import random
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from lake_helpers import events

from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.lake.maintenance import compaction_days, maintain

DAY1, DAY2 = date(2026, 3, 1), date(2026, 3, 2)
ROWS = 100


def lake_at(root: Path) -> EventLake:
    return EventLake(LakeLocation.from_env(str(root)), file_rows=ROWS)


def shuffled(table: pa.Table, seed: int = 3) -> pa.Table:
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    return table.take(pa.array(order))


def layout(lake: EventLake, day: date) -> list[tuple]:
    """(min time, max time, rows) of the day's files, in time order."""
    files = lake.snapshot().files()
    files = files.filter(pc.equal(files.column("event_date"), pa.scalar(day, pa.date32())))
    return sorted(zip(files.column("min_time").to_pylist(), files.column("max_time").to_pylist(),
                      files.column("num_records").to_pylist(), strict=True))


def assert_in_layout(lake: EventLake, day: date, rows: int) -> None:
    found = layout(lake, day)
    assert [n for _, _, n in found] == [ROWS] * (rows // ROWS) + ([rows % ROWS] if rows % ROWS else [])
    assert all(found[k][1] < found[k + 1][0] for k in range(len(found) - 1)), found  # one stretch of time each


def rows(lake: EventLake) -> list[dict]:
    table = lake.snapshot().dataset().to_table()
    return table.take(pc.sort_indices(table, [("event_id", "ascending")])).to_pylist()


def log_actions(root: Path, version: int) -> list[dict]:
    text = (root / "platform_events" / "_delta_log" / f"{version:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_rows_in_any_order_are_written_in_time_order_as_files_of_file_rows(tmp_path: Path) -> None:
    lake = lake_at(tmp_path / "lake")
    batch = shuffled(pa.concat_tables([events(DAY1, 1_050), events(DAY2, 230)]))
    commit = lake.append([batch.slice(0, 700), batch.slice(700)], app_id="lake", version=1)
    assert commit.version == 1 and commit.files == 11 + 3
    assert_in_layout(lake, DAY1, 1_050)
    assert_in_layout(lake, DAY2, 230)
    assert lake.snapshot().query("SELECT count(*), count(DISTINCT event_id) FROM platform_events")[0] == (1_280, 1_280)


def test_replace_files_replaces_only_the_named_files_in_one_commit(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = lake_at(root)
    lake.append([events(DAY1, 450)], app_id="lake", version=1)
    before = set(lake.snapshot().files().column("path").to_pylist())
    snapshot = lake.snapshot()
    second = sorted(snapshot.files().to_pylist(), key=lambda f: f["min_time"])[1]
    held = snapshot.dataset().to_table()
    in_second = held.filter(pc.and_(pc.greater_equal(held.column("timestamp"), second["min_time"]),
                                    pc.less_equal(held.column("timestamp"), second["max_time"])))
    assert in_second.num_rows == ROWS
    kept = in_second.slice(1)  # one event of the file goes

    commit = lake.replace_files([([second["path"]], kept)])
    assert commit.version == 2 and commit.files_removed == 1 and commit.files == 1
    after = set(lake.snapshot().files().column("path").to_pylist())
    assert before - after == {second["path"]} and len(after - before) == 1  # every other file untouched
    assert lake.snapshot().query("SELECT count(*) FROM platform_events")[0][0] == 449
    gone = in_second.column("event_id")[0].as_py()
    assert lake.snapshot().query("SELECT count(*) FROM platform_events WHERE event_id = ?", [gone])[0][0] == 0
    removes = [a["remove"] for a in log_actions(root, 2) if "remove" in a]
    assert [(r["path"], r["dataChange"]) for r in removes] == [(second["path"], True)]

    with pytest.raises(FileNotFoundError, match="no longer in the table"):  # taken by another commit meanwhile
        lake.replace_files([([second["path"]], kept)])
    assert lake.version() == 2 and set(lake.snapshot().files().column("path").to_pylist()) == after


def test_maintenance_re_sorts_days_out_of_layout(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    lake = lake_at(root)
    late = shuffled(events(DAY1, 750))
    for i in range(30):  # sweeps of 25 events in no particular time order: small files whose time ranges overlap
        lake.append([late.slice(25 * i, 25)], app_id="lake", version=i + 1)
    lake.append([events(DAY2, 350)], app_id="lake", version=31)
    assert compaction_days(lake.snapshot().files(), {DAY1: ROWS, DAY2: ROWS}) == [DAY1]
    expected = rows(lake)

    result = maintain(lake, vacuum_retention_hours=0)
    assert result.days_compacted == [DAY1] and result.files_removed == 30 and result.files_added == 8
    assert_in_layout(lake, DAY1, 750)
    assert_in_layout(lake, DAY2, 350)
    assert rows(lake) == expected
    # a rearrangement: no data change, so engines reload nothing
    compaction = log_actions(root, result.version_before + 1)
    assert {a[k]["dataChange"] for a in compaction for k in ("add", "remove") if k in a} == {False}
    assert lake.actions(result.version_before, result.version_before + 1).data_change is False

    lake.table().optimize.compact(partition_filters=[("event_date", "=", DAY1.isoformat())])  # delta-rs: one file
    assert [n for _, _, n in layout(lake, DAY1)] == [750]
    again = maintain(lake, vacuum_retention_hours=0)
    assert again.days_compacted == [DAY1]
    assert_in_layout(lake, DAY1, 750)
    assert maintain(lake, vacuum_retention_hours=0).days_compacted == []

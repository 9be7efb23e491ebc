"""``workdev-pipeline lake import DIR``: an old-format Parquet warehouse directory imported into the lake, one predicate
overwrite per batch of days (idempotent), and bad input reported as one ``error:`` line with exit status 2."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from lake_helpers import events, make_lake, money_events, old_lake

from workdev_pipeline.lake_cli import lake_group

DAY1, DAY2, DAY3, DAY4 = date(2026, 2, 1), date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 4)


def plain_json(table: pa.Table) -> pa.Table:
    """The same rows with event_data/metadata as plain strings (an older writer's files)."""
    for name in ("event_data", "metadata"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.string()))
    return table


def old_warehouse(root: Path) -> dict[date, pa.Table]:
    """An old local warehouse: two days in place (JSON extension and plain-string files, a stray marker), a third
    only in a marked staging directory (a swap killed halfway), plus what the import must ignore: an unmarked
    staging day, a sweep's staging, the trash."""
    table_dir = root / "platform_events"
    day1 = [events(DAY1, 40), events(DAY1, 25, start=40)]
    day2 = [events(DAY2, 30)]
    day3 = [events(DAY3, 12)]
    (table_dir / "event_date=2026-02-01").mkdir(parents=True)
    pq.write_table(day1[0], table_dir / "event_date=2026-02-01" / "part-s000000000001.parquet")
    pq.write_table(plain_json(day1[1]), table_dir / "event_date=2026-02-01" / "part-s000000000002.parquet")
    (table_dir / "event_date=2026-02-02").mkdir()
    pq.write_table(day2[0], table_dir / "event_date=2026-02-02" / "part-s000000000001.parquet")
    (table_dir / "event_date=2026-02-02" / "_COMMIT").write_text("2026-02-02")
    marked = root / "_staging" / "day-2026-02-03-0123456789ab"
    marked.mkdir(parents=True)
    pq.write_table(day3[0], marked / "part-00000.parquet")
    (marked / "_COMMIT").write_text("2026-02-03")
    unmarked = root / "_staging" / "day-2026-02-02-ba9876543210"
    unmarked.mkdir()
    pq.write_table(events(DAY2, 3, start=900), unmarked / "part-00000.parquet")
    sweep = root / "_staging" / "sweep-000000000009" / "event_date=2026-02-01"
    sweep.mkdir(parents=True)
    pq.write_table(events(DAY1, 4, start=800), sweep / "part-s000000000009.parquet")
    trash = root / "_trash" / "event_date=2026-02-01-deadbeef0000"
    trash.mkdir(parents=True)
    pq.write_table(events(DAY1, 7, start=700), trash / "part-s000000000000.parquet")
    return {DAY1: pa.concat_tables(day1), DAY2: day2[0], DAY3: day3[0]}


def lake_rows(lake, day: date) -> list[dict]:
    table = lake.snapshot().dataset(days=[day]).to_table()
    table = table.take(pc.sort_indices(table, [("event_id", "ascending")]))
    return table.drop_columns(["event_date"]).to_pylist()


def expected_rows(table: pa.Table) -> list[dict]:
    table = plain_json(table).take(pc.sort_indices(table, [("event_id", "ascending")]))
    return table.to_pylist()


def invoke(*args: str):
    return CliRunner().invoke(lake_group, list(args), catch_exceptions=False)


def test_import_replaces_exactly_the_directorys_days(tmp_path: Path, admin_url: str) -> None:
    source = tmp_path / "warehouse"
    expected = old_warehouse(source)
    lake = make_lake(tmp_path / "lake")
    lake.append([events(DAY1, 9, start=500), events(DAY4, 6)], app_id="lake", version=1)  # swept before the import

    args = ["import", str(source), "--database-url", admin_url, "--lake-uri", str(tmp_path / "lake"),
            "--days-per-commit", "2"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "imported 107 rows of 3 day(s) from 4 file(s)" in first.output and "in 2 commit(s)" in first.output
    assert lake.snapshot().days() == [DAY1, DAY2, DAY3, DAY4]
    for day, table in expected.items():
        assert lake_rows(lake, day) == expected_rows(table), day
    day4 = lake_rows(lake, DAY4)
    assert len(day4) == 6  # a day the directory does not hold is untouched
    version = lake.version()

    again = invoke(*args)  # idempotent: the same table again
    assert again.exit_code == 0, again.output
    assert lake.version() == version + 2
    for day, table in expected.items():
        assert lake_rows(lake, day) == expected_rows(table), day
    assert lake_rows(lake, DAY4) == day4

    missing_only = invoke(*args, "--only-missing")
    assert missing_only.exit_code == 0 and "3 day(s) already in the lake skipped" in missing_only.output
    assert lake.version() == version + 2


@pytest.mark.parametrize("layout, message", [
    ("missing", "no such directory"),
    ("no_table", "no platform_events/ directory"),
    ("no_days", "no day directories in platform_events/"),
    ("bad_date", "'2026-13-01' is not a date"),
    ("wrong_day", "holds rows of 2026-02-02..2026-02-02 in the directory of 2026-02-01"),
    ("not_parquet", "not a readable Parquet file"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path: Path, layout: str, message: str) -> None:
    source = tmp_path / "warehouse"
    if layout != "missing":
        source.mkdir()
    if layout in ("no_days", "bad_date", "wrong_day", "not_parquet"):
        (source / "platform_events" / "README").parent.mkdir()
        (source / "platform_events" / "README").write_text("not a day")
    if layout == "bad_date":
        (source / "platform_events" / "event_date=2026-13-01").mkdir()
    if layout == "wrong_day":
        (source / "platform_events" / "event_date=2026-02-01").mkdir()
        pq.write_table(events(DAY2, 3), source / "platform_events" / "event_date=2026-02-01" / "part-s1.parquet")
    if layout == "not_parquet":
        (source / "platform_events" / "event_date=2026-02-01").mkdir()
        (source / "platform_events" / "event_date=2026-02-01" / "part-s1.parquet").write_text("garbage")
    result = CliRunner().invoke(lake_group, ["import", str(source), "--no-lock", "--lake-uri", str(tmp_path / "lake")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "lake").exists()  # nothing was written


def test_an_old_lake_gains_the_typed_amount_columns(tmp_path: Path) -> None:
    """A lake written before ``amount``/``amount_overflow``: the next write adds them (one metadata commit, NULL in
    the old files' rows), new rows carry them; DuckDB and delta-rs read both generations by name; an overwrite of an
    old day (a rebuild, an erasure) fills them from event_data; an import of old files fills them."""
    lake = make_lake(tmp_path / "lake")
    old_lake(lake, money_events(DAY1, ["12345678901234567.89", 10**30], start=0))
    assert lake.snapshot().query("SELECT amount, amount_overflow FROM platform_events") == [(None, None)] * 2

    lake.append([events(DAY2, 2, start=10)], app_id="lake", version=1)
    assert {"amount", "amount_overflow"} <= set(pa.schema(lake.table().schema().to_arrow()).names)
    both = lake.snapshot().query("SELECT event_date, amount, amount_overflow FROM platform_events ORDER BY 1, 2")
    assert both == [(DAY1, None, None), (DAY1, None, None), (DAY2, None, False), (DAY2, None, False)]

    # a day overwritten with its own rows read back (as an erasure does) gets its amounts from event_data
    day1 = lake.snapshot().dataset(days=[DAY1]).to_table()
    lake.replace_days([DAY1], [day1])
    held = lake.snapshot().query("SELECT amount, amount_overflow FROM platform_events WHERE event_date = ? "
                                 "ORDER BY amount NULLS LAST", [DAY1])
    assert held == [(Decimal("12345678901234567.890000000"), False), (None, True)]

    # an old warehouse directory's files (no amount columns) are imported with their amounts
    source = tmp_path / "warehouse" / "platform_events" / "event_date=2026-02-03"
    source.mkdir(parents=True)
    pq.write_table(plain_json(money_events(DAY3, [2**70, "0.000000001"], start=20)), source / "part-s1.parquet")
    result = CliRunner().invoke(lake_group, ["import", str(tmp_path / "warehouse"), "--no-lock", "--lake-uri",
                                             str(tmp_path / "lake")])
    assert result.exit_code == 0, result.output
    assert lake.snapshot().query("SELECT amount, amount_overflow FROM platform_events WHERE event_date = ? "
                                 "ORDER BY 1", [DAY3]) == [(Decimal("1E-9"), False), (Decimal(2**70), False)]

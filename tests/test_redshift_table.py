"""The Redshift engine's table through the real redshift_connector, against the PostgreSQL stand-in
(``tests/redshift_standin.py``; dialect "postgres"). The Redshift DDL itself is checked as text only."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redshift_connector

from tests.redshift_standin import RedshiftStandin, redshift_database, redshift_standin, standin_connect
from workdev_pipeline.aggregations.amounts import event_amounts
from workdev_pipeline.enrichment import DEVICE_INFO_TYPE, GEO_LOCATION_TYPE
from workdev_pipeline.ingest.schema import JSON, WAREHOUSE_SCHEMA
from workdev_pipeline.warehouses.redshift import COLUMNS, RedshiftEventTable, table_column_definitions

__all__ = ["redshift_database", "redshift_standin"]  # the fixtures, imported for pytest

DAY = date(2024, 3, 10)
OTHER_DAY = date(2024, 3, 11)
Connect = Callable[[], redshift_connector.Connection]


def events(day: date, ids: Sequence[int], *, user: str | None = "user-1", event_type: str = "page_view",
           data: dict[str, Any] | None = None, ingested_at: datetime | None = None) -> pa.Table:
    """Rows of ``day`` in the warehouse schema, one per id (``evt-<id>``), a microsecond apart from 12:00."""
    n = len(ids)
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    columns = {
        "event_id": pa.array([f"evt-{i}" for i in ids]),
        "event_type": pa.array([event_type] * n),
        "event_category": pa.array(["interaction"] * n),
        "user_id": pa.array([user] * n, pa.string()),
        "user_role": pa.array(["freelancer"] * n),
        "user_tenure_days": pa.array([i % 400 for i in ids], pa.int32()),
        "entity_type": pa.array(["job"] * n),
        "entity_id": pa.array([f"job-{i}" for i in ids]),
        "event_data": pa.ExtensionArray.from_storage(JSON, pa.array(
            [json.dumps(data if data is not None else {"i": i, "path": "/jobs"}) for i in ids], pa.string())),
        "metadata": pa.ExtensionArray.from_storage(JSON, pa.array(['{"ip_address": "10.0.0.1"}'] * n, pa.string())),
        "source": pa.array(["web"] * n),
        "timestamp": pa.array([noon + timedelta(microseconds=i) for i in ids], pa.timestamp("us", tz="UTC")),
        "session_id": pa.array([f"session-{i % 3}" for i in ids]),
        "geo_location": pa.array([{"country": "DE", "region": None, "city": None}] * n, GEO_LOCATION_TYPE),
        "device_info": pa.array([{"device_type": "desktop", "browser": "Firefox", "os": "Linux"}] * n,
                                DEVICE_INFO_TYPE),
        "ingested_at": pa.array([ingested_at or datetime(2024, 3, 12, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
    }
    columns["amount"], columns["amount_overflow"] = event_amounts(columns["event_type"], columns["event_data"])
    return pa.Table.from_arrays([columns[f.name] for f in WAREHOUSE_SCHEMA], schema=WAREHOUSE_SCHEMA)


def write(directory: Path, name: str, table: pa.Table) -> Path:
    path = directory / f"{name}.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture
def table(redshift_database: Connect) -> RedshiftEventTable:
    events_table = RedshiftEventTable(redshift_database, dialect="postgres")
    events_table.ensure_table()
    yield events_table
    events_table.close()


def fetch(connect: Connect, sql: str, parameters: Sequence[Any] = ()) -> list[list[Any]]:
    conn = connect()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, tuple(parameters) or None)
        rows = [list(row) for row in cursor.fetchall() or ()] if cursor.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def test_ensure_table_is_idempotent_and_adds_missing_columns(redshift_database: Connect) -> None:
    events_table = RedshiftEventTable(redshift_database, schema="warehouse", dialect="postgres")
    events_table.ensure_table()
    events_table.ensure_table()
    columns = "SELECT column_name FROM information_schema.columns WHERE table_schema = %s ORDER BY ordinal_position"
    assert [row[0] for row in fetch(redshift_database, columns, ["warehouse"])] == list(COLUMNS)
    # a table made before the schema gained its last two columns (the typed amount)
    fetch(redshift_database, "ALTER TABLE warehouse.platform_events DROP COLUMN amount, DROP COLUMN amount_overflow")
    events_table.ensure_table()
    assert [row[0] for row in fetch(redshift_database, columns, ["warehouse"])] == list(COLUMNS)
    numeric = fetch(redshift_database, "SELECT data_type, numeric_precision, numeric_scale FROM "
                                       "information_schema.columns WHERE table_schema = %s AND column_name = 'amount'",
                    ["warehouse"])
    assert [tuple(row) for row in numeric] == [("numeric", 38, 9)]
    types = fetch(redshift_database, "SELECT column_name, data_type FROM information_schema.columns "
                                     "WHERE table_schema = %s AND data_type = 'jsonb'", ["warehouse"])
    assert {row[0] for row in types} == {"event_data", "metadata", "geo_location", "device_info"}
    events_table.close()


def test_production_ddl_is_redshift_and_the_standin_differs_only_in_types_and_layout() -> None:
    def never() -> redshift_connector.Connection:
        raise AssertionError("no connection needed to render statements")

    production = RedshiftEventTable(never, schema="analytics")
    create_schema, create_table = production.ddl()
    assert create_schema == 'CREATE SCHEMA IF NOT EXISTS "analytics"'
    assert 'CREATE TABLE IF NOT EXISTS "analytics"."platform_events"' in create_table
    for column in ("event_data", "metadata", "geo_location", "device_info"):
        assert f"{column} SUPER" in create_table
    assert "DISTKEY (event_id)" in create_table
    assert 'COMPOUND SORTKEY ("timestamp", event_type)' in create_table
    assert '"timestamp" TIMESTAMPTZ NOT NULL ENCODE RAW' in create_table
    assert "ENCODE AZ64" in create_table and "ENCODE ZSTD" in create_table
    assert "JSON_PARSE(%s)" in production.insert_statement(2)

    standin = RedshiftEventTable(never, schema="analytics", dialect="postgres")
    standin_ddl = standin.ddl()[1]
    for word in ("SUPER", "DISTKEY", "SORTKEY", "ENCODE"):
        assert word not in standin_ddl
    assert "CAST(%s AS JSONB)" in standin.insert_statement(2)
    redshift_columns, postgres_columns = table_column_definitions("redshift"), table_column_definitions("postgres")
    assert list(redshift_columns) == list(postgres_columns) == list(COLUMNS)
    for name, definition in redshift_columns.items():  # same columns, types and nullability: only SUPER/ENCODE
        expected = definition.replace("SUPER", "JSONB").split(" ENCODE ")[0]
        assert postgres_columns[name] == expected
    # every other statement is one file for both dialects
    assert production.statement("merge_delete").replace('"analytics"', "") == \
        standin.statement("merge_delete").replace('"analytics"', "")


def test_merge_twice_leaves_one_copy_and_replaces_changed_rows(table: RedshiftEventTable, tmp_path: Path) -> None:
    first = write(tmp_path, "a", events(DAY, range(0, 30)))
    second = write(tmp_path, "b", events(DAY, range(30, 50), event_type="job_view"))
    assert table.merge_files(DAY, [first, second], "sweep-1-2024-03-10") == 50
    assert table.merge_files(DAY, [first, second], "sweep-1-2024-03-10") == 50
    assert table.day_counts(DAY) == {"page_view": 30, "job_view": 20}
    assert table.duplicate_event_ids(DAY) == []
    changed = write(tmp_path, "c", events(DAY, [5], event_type="job_apply", data={"changed": True}))
    assert table.merge_files(DAY, [changed], "sweep-2-2024-03-10") == 1
    assert table.day_counts(DAY) == {"page_view": 29, "job_view": 20, "job_apply": 1}
    rows = fetch(table._connect, "SELECT event_type, event_data FROM platform_events WHERE event_id = 'evt-5'")
    assert [(row[0], json.loads(row[1])) for row in rows] == [("job_apply", {"changed": True})]
    assert table.event_ids(DAY) == {f"evt-{i}" for i in range(50)}
    assert table.merge_files(DAY, [], "sweep-3-2024-03-10") == 0


def test_merge_keeps_one_row_per_event_of_a_file_holding_it_twice(table: RedshiftEventTable, tmp_path: Path) -> None:
    old = events(DAY, [1, 2], ingested_at=datetime(2024, 3, 12, tzinfo=UTC))
    new = events(DAY, [1], event_type="job_view", ingested_at=datetime(2024, 3, 13, tzinfo=UTC))
    path = write(tmp_path, "twice", pa.concat_tables([old, new]))
    assert table.merge_files(DAY, [path], "sweep-1") == 2
    assert table.day_counts(DAY) == {"page_view": 1, "job_view": 1}


def test_replace_day_touches_only_its_day_and_no_files_empties_it(table: RedshiftEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write(tmp_path, "day", events(DAY, range(10)))], "sweep-1-a")
    table.merge_files(OTHER_DAY, [write(tmp_path, "other", events(OTHER_DAY, range(100, 110)))], "sweep-1-b")
    previous = (datetime(2024, 3, 9, 23, 59, 59, 999999, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC))
    for stamp, event_id in zip(previous, ("edge-before", "edge-after"), strict=True):  # the day's neighbours
        fetch(table._connect, "INSERT INTO platform_events (event_id, event_type, event_category, \"timestamp\", "
                              "ingested_at) VALUES (%s, 'edge', 'system', %s, %s)", [event_id, stamp, stamp])
    rebuilt = write(tmp_path, "rebuilt", events(DAY, range(3, 6), event_type="job_view"))
    assert table.replace_day(DAY, [rebuilt], "rebuild-2024-03-10") == 3
    assert table.day_counts(DAY) == {"job_view": 3}
    assert table.event_ids(DAY) == {"evt-3", "evt-4", "evt-5"}
    assert table.day_counts(OTHER_DAY) == {"page_view": 10, "edge": 1}
    assert table.day_counts(date(2024, 3, 9)) == {"edge": 1}
    assert table.replace_day(DAY, [rebuilt], "rebuild-2024-03-10") == 3  # idempotent
    assert table.day_counts(DAY) == {"job_view": 3}
    assert table.replace_day(DAY, [], "remove-2024-03-10") == 0
    assert table.day_counts(DAY) == {}
    assert table.day_counts(OTHER_DAY) == {"page_view": 10, "edge": 1}


def test_values_round_trip(table: RedshiftEventTable, tmp_path: Path) -> None:
    data = {"title": "Ünïcødé 'quoted' \"double\" \\ back", "amount": 12.5, "tags": ["a", None], "nested": {"x": 1}}
    source = events(DAY, [7], data=data)
    source = source.set_column(WAREHOUSE_SCHEMA.get_field_index("geo_location"), "geo_location",
                               pa.array([None], GEO_LOCATION_TYPE))
    source = source.set_column(WAREHOUSE_SCHEMA.get_field_index("user_id"), "user_id", pa.array([None], pa.string()))
    table.merge_files(DAY, [write(tmp_path, "one", source)], "sweep-1")
    names = ", ".join(f'"{name}"' for name in COLUMNS)
    [row] = fetch(table._connect, f"SELECT {names} FROM platform_events")
    got = dict(zip(COLUMNS, row, strict=True))
    expected = source.to_pylist()[0]
    for name in ("event_data", "metadata", "geo_location", "device_info"):
        got[name] = None if got[name] is None else json.loads(got[name])
        expected[name] = None if expected[name] is None else (
            json.loads(expected[name]) if isinstance(expected[name], str) else expected[name])
    assert got == expected
    assert got["timestamp"] == datetime(2024, 3, 10, 12, 0, 0, 7, tzinfo=UTC)
    assert got["timestamp"].utcoffset() == timedelta(0)
    assert got["device_info"] == {"device_type": "desktop", "browser": "Firefox", "os": "Linux"}
    assert got["geo_location"] is None and got["user_id"] is None


def test_counts_duplicates_event_ids_and_user_rows(table: RedshiftEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write(tmp_path, "a", events(DAY, range(5), user="alice"))], "sweep-1-a")
    table.merge_files(OTHER_DAY, [write(tmp_path, "b", events(OTHER_DAY, range(10, 13), user="alice",
                                                               event_type="job_view"))], "sweep-1-b")
    table.merge_files(DAY, [write(tmp_path, "c", events(DAY, range(20, 22), user="bob"))], "sweep-2-a")
    # duplicates cannot come from a load (merge is idempotent): put them there by hand
    fetch(table._connect, "INSERT INTO platform_events SELECT * FROM platform_events WHERE event_id IN "
                          "('evt-1', 'evt-2', 'evt-10')")
    fetch(table._connect, "INSERT INTO platform_events SELECT * FROM platform_events WHERE event_id = 'evt-1' LIMIT 1")
    assert table.duplicate_event_ids(DAY) == [("evt-1", 3), ("evt-2", 2)]
    assert table.duplicate_event_ids(DAY, limit=1) == [("evt-1", 3)]
    assert table.duplicate_event_ids(OTHER_DAY) == [("evt-10", 2)]
    assert table.day_counts(DAY) == {"page_view": 10}
    assert table.event_ids(DAY) == {"evt-0", "evt-1", "evt-2", "evt-3", "evt-4", "evt-20", "evt-21"}
    assert table.user_row_count("alice") == 5 + 3 + 2 + 1 + 1
    assert table.user_row_count("bob") == 2
    assert table.user_row_count("nobody") == 0
    assert table.day_counts(date(2024, 1, 1)) == {} and table.event_ids(date(2024, 1, 1)) == set()


def test_batches_split_by_rows_and_bytes(redshift_database: Connect, tmp_path: Path) -> None:
    small = RedshiftEventTable(redshift_database, dialect="postgres", batch_rows=7, batch_bytes=2_000)
    small.ensure_table()
    paths = [write(tmp_path, "a", events(DAY, range(40))), write(tmp_path, "b", events(DAY, range(40, 61)))]
    assert small.merge_files(DAY, paths, "sweep-1") == 61
    assert sum(small.day_counts(DAY).values()) == 61
    assert small.event_ids(DAY) == {f"evt-{i}" for i in range(61)}
    assert RedshiftEventTable(redshift_database, batch_rows=10**6).batch_rows == 32_767 // len(COLUMNS)
    small.close()


def test_batch_sizes_are_few_distinct_statements() -> None:
    rows = pa.RecordBatch.from_pylist([{"x": "a" * 10}] * 2_234)
    loader = RedshiftEventTable(lambda: None, dialect="postgres", batch_rows=1_000)  # type: ignore[arg-type,return-value]
    assert [part.num_rows for part in loader._split(rows)] == [1_000, 1_000, 128, 64, 32, 8, 2]
    by_bytes = RedshiftEventTable(lambda: None, dialect="postgres", batch_rows=1_000,  # type: ignore[arg-type,return-value]
                                  batch_bytes=rows.nbytes // 10)
    sizes = [part.num_rows for part in by_bytes._split(rows)]
    assert sum(sizes) == 2_234 and max(sizes) == 128 and all(size & (size - 1) == 0 for size in sizes)


def test_a_failed_load_changes_nothing(table: RedshiftEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write(tmp_path, "a", events(DAY, range(5)))], "sweep-1")
    bad = events(DAY, range(5, 8)).cast(WAREHOUSE_SCHEMA.set(0, pa.field("event_id", pa.string())))
    bad = bad.set_column(0, "event_id", pa.array(["evt-5", None, "evt-7"]))
    with pytest.raises(redshift_connector.ProgrammingError):  # NOT NULL: the whole transaction rolls back
        table.replace_day(DAY, [write(tmp_path, "bad", bad)], "rebuild")
    assert table.day_counts(DAY) == {"page_view": 5}  # and the table works on after the failure


class RecordingCursor:
    """A cursor double that records what it is sent."""

    def __init__(self, statements: list[tuple[str, Any]]) -> None:
        self.statements = statements
        self.rowcount = 4

    def execute(self, sql: str, parameters: Any = None) -> None:
        self.statements.append((sql, parameters))

    def close(self) -> None:
        pass


class RecordingConnection:
    """A connection double (what RedshiftEventTable uses of redshift_connector.Connection)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []
        self.commits = 0
        self.max_prepared_statements = 1000

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.statements)

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_merge_through_s3_copy_statement_s3_double(tmp_path: Path) -> None:
    """A test double: no S3 and no Redshift here. The uploader copies into a local "bucket" directory and the
    connection records the statements the table would send."""
    bucket_root = tmp_path / "s3"

    def local_uploader(bucket: str, key_prefix: str, paths: Sequence[Path]) -> None:
        target = bucket_root / bucket / key_prefix
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for index, path in enumerate(paths):
            shutil.copyfile(path, target / f"{index:05d}-{path.name}")

    conn = RecordingConnection()
    events_table = RedshiftEventTable(lambda: conn, schema="analytics", s3_bucket="wd-loads", s3_prefix="/events/",
                                      iam_role="arn:aws:iam::123456789012:role/redshift-load", uploader=local_uploader)
    files = tmp_path / "files"
    files.mkdir()
    path = write(files, "sweep-00042", events(DAY, range(4)))
    assert events_table.merge_files(DAY, [path], "sweep-42-2024-03-10") == 4
    uploaded = list((bucket_root / "wd-loads" / "events" / "sweep-42-2024-03-10").iterdir())
    assert [p.name for p in uploaded] == ["00000-sweep-00042.parquet"]
    assert pq.read_table(uploaded[0]).num_rows == 4
    sent = [sql for sql, _ in conn.statements]
    assert sent[:2] == ["DROP TABLE IF EXISTS platform_events_staging",
                        'CREATE TEMP TABLE platform_events_staging (LIKE "analytics"."platform_events")']
    assert sent[2] == ("COPY platform_events_staging FROM 's3://wd-loads/events/sweep-42-2024-03-10/'\n"
                       "IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-load'\n"
                       "FORMAT AS PARQUET SERIALIZETOJSON")
    assert sent[3].startswith("UPDATE platform_events_staging") and "JSON_PARSE" in sent[3]
    assert sent[4].startswith('DELETE FROM "analytics"."platform_events"\nUSING platform_events_staging')
    assert conn.statements[4][1] == (datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC))
    assert sent[5].startswith('INSERT INTO "analytics"."platform_events"')
    assert sent[6] == "DROP TABLE IF EXISTS platform_events_staging"
    assert len(sent) == 7 and conn.commits == 1
    assert not any("INSERT INTO platform_events_staging" in sql for sql in sent)  # no row-by-row path
    assert conn.max_prepared_statements == 8


def test_a_dead_server_raises_transient_errors(admin_url: str, redshift_database: Connect, tmp_path: Path) -> None:
    database = fetch(redshift_database, "SELECT current_database()")[0][0]
    standin = RedshiftStandin.in_front_of(admin_url).start()  # its own proxy: the session's one stays up
    events_table = RedshiftEventTable(lambda: standin_connect(standin, database, admin_url), dialect="postgres")
    events_table.ensure_table()
    path = write(tmp_path, "a", events(DAY, range(3)))
    assert events_table.merge_files(DAY, [path], "sweep-1") == 3
    standin.stop()  # the open connection is cut, and nothing listens on the port any more
    with pytest.raises(events_table.transient_errors):
        events_table.merge_files(DAY, [path], "sweep-1")
    with pytest.raises(events_table.transient_errors) as refused:  # reconnecting: connection refused
        events_table.day_counts(DAY)
    assert "refused" in str(refused.value).lower()
    events_table.close()


def lake_file(directory: Path, name: str, table: pa.Table) -> Path:
    """A file as the lake writes it: the warehouse columns, JSON as plain strings, under event_date=... ."""
    columns = [c.cast(pa.string()) if isinstance(c.type, pa.BaseExtensionType) else c for c in table.columns]
    day = table.column("timestamp")[0].as_py().date()
    folder = directory / f"event_date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.zstd.parquet"
    pq.write_table(pa.Table.from_arrays(columns, names=table.column_names), path, compression="zstd")
    return path


def test_lake_files_load_and_days_are_listed(table: RedshiftEventTable, tmp_path: Path) -> None:
    assert table.days() == set()
    table.merge_files(DAY, [lake_file(tmp_path, "a", events(DAY, range(3), data={"k": "v"}))], "lake-1")
    table.replace_day(OTHER_DAY, [lake_file(tmp_path, "b", events(OTHER_DAY, range(10, 12)))], "lake-2")
    assert table.days() == {DAY, OTHER_DAY}
    rows = fetch(table._connect, "SELECT event_data FROM platform_events WHERE event_id = 'evt-1'")
    assert json.loads(rows[0][0]) == {"k": "v"}  # a JSON string of the lake is a JSON object in the engine
    with pytest.raises(ValueError, match="local files"):  # object URIs are copied here first (lake/delivery.py)
        table.merge_files(DAY, ["s3://lake/platform_events/event_date=2024-03-10/x.parquet"], "lake-3")


def test_retention_in_place_deletes_exactly_the_expired_rows_of_the_planned_days(table: RedshiftEventTable,
                                                                                 tmp_path: Path) -> None:
    table.merge_files(DAY, [write(tmp_path, "a", events(DAY, range(10), event_type="page_view"))], "s-1")
    table.merge_files(DAY, [write(tmp_path, "b", events(DAY, range(10, 14), event_type="payment"))], "s-2")
    table.merge_files(OTHER_DAY, [write(tmp_path, "c", events(OTHER_DAY, range(20, 25)))], "s-3")
    noon = datetime(2024, 3, 10, 12, tzinfo=UTC)
    cutoffs = {"page_view": noon + timedelta(microseconds=5),  # evt-0..4 are older
               "payment": noon}  # none older (evt-10.. are at 12:00:00.000010 and after)
    before = datetime(2024, 3, 12, tzinfo=UTC)
    plan = sorted(table.expired_by_day(cutoffs, before))
    assert plan == [(DAY, "interaction", 5, 14), (OTHER_DAY, "interaction", 0, 5)]
    assert table.delete_expired(cutoffs, datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)) == 5
    assert table.event_ids(DAY) == {f"evt-{i}" for i in range(5, 14)}
    assert table.event_ids(OTHER_DAY) == {f"evt-{i}" for i in range(20, 25)}  # outside the range: untouched
    unknown = {"something_else": before}  # a type without a cut-off never expires
    assert table.delete_expired(unknown, datetime(2024, 3, 10, tzinfo=UTC), before) == 0


def test_erasure_refresh_replaces_exactly_the_queued_events(table: RedshiftEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write(tmp_path, "a", events(DAY, range(6), user="alice"))], "s-1")
    table.merge_files(DAY, [write(tmp_path, "b", events(DAY, range(6, 9), user="bob"))], "s-2")
    table.merge_files(OTHER_DAY, [write(tmp_path, "c", events(OTHER_DAY, [20], user="alice"))], "s-3")
    assert sorted(r[0] for r in table.user_rows("alice")) == ["evt-0", "evt-1", "evt-2", "evt-20", "evt-3", "evt-4",
                                                              "evt-5"]
    assert all(r[1].tzinfo is not None for r in table.user_rows("alice"))
    queued = [f"evt-{i}" for i in (0, 1, 2, 20)]  # evt-2 is gone from the lake; 3..5 not queued (yet)
    start, end = datetime(2024, 3, 10, tzinfo=UTC), datetime(2024, 3, 12, tzinfo=UTC)
    assert sorted(table.held_event_ids(queued, start, end)) == ["evt-0", "evt-1", "evt-2", "evt-20"]
    anonymised = pa.concat_tables([events(DAY, [0, 1], user=None, data={"plan": "pro"}),
                                   events(OTHER_DAY, [20], user=None, data={"plan": "pro"})])
    assert table.refresh_events(queued, start, end, [write(tmp_path, "lake", anonymised)], "erasure-1") == 3
    assert sorted(r[0] for r in table.user_rows("alice")) == ["evt-3", "evt-4", "evt-5"]
    assert table.event_ids(DAY) == {f"evt-{i}" for i in range(9)} - {"evt-2"}
    assert table.user_row_count("bob") == 3
    assert table.refresh_events(["evt-3"], start, end, [], "erasure-2") == 0  # no lake row: deleted
    assert "evt-3" not in table.event_ids(DAY)
    assert table.refresh_events(queued, start, end, [write(tmp_path, "lake2", anonymised)], "erasure-1") == 3  # again
    assert sum(table.day_counts(DAY).values()) == 7 and table.duplicate_event_ids(DAY) == []


def test_trace_queries_read_the_engine(table: RedshiftEventTable, tmp_path: Path) -> None:
    table.merge_files(DAY, [write(tmp_path, "a", events(DAY, range(3), user="alice",
                                                        data={"email": "a@example.test", "n": 1}))], "s-1")
    table.merge_files(DAY, [write(tmp_path, "b", events(DAY, [7], user=None, event_type="signup",
                                                        data={"phone": "+1 555", "note": "a@example.test"}))], "s-2")
    rows = sorted((t, u, json.loads(d), json.loads(m)) for t, u, _, d, m in table.payloads())
    assert [(t, u) for t, u, _, _ in rows] == [(rows[0][0], "alice")] * 3 + [("signup", None)]
    assert rows[-1][2:] == ({"phone": "+1 555", "note": "a@example.test"}, {"ip_address": "10.0.0.1"})
    assert table.ip_user_agents() == [("10.0.0.1", None, 1)]

"""The extraction reads the store's columns without a join or a cast (uuids as 16 bytes, JSON as its text, the IP
address and user agent split out of metadata) and joins the user's role and tenure in Arrow: the rows it gives are
those the pipeline_event_rows view computed from metadata and user_attributes in SQL before 0023, value for value."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.ingest.extract import EventReader
from workdev_pipeline.ingest.pipeline_rows import PIPELINE_SCHEMA, uuid_text
from workdev_pipeline.sql_files import query

#: The pipeline's rows as PostgreSQL computed them before 0023 (the view of 0008, computing from metadata).
COMPUTED_IN_SQL = """
SELECT e.event_id::text AS event_id, e.event_type, e.event_category, e.user_id::text AS user_id, u.user_role,
       floor(extract(epoch FROM e."timestamp" - u.signed_up_at) / 86400)::int AS user_tenure_days,
       e.entity_type, e.entity_id, e.event_data::text AS event_data,
       (e.metadata - 'ip_address' - 'user_agent')::text AS metadata,
       e.metadata ->> 'ip_address' AS ip_address, e.metadata ->> 'user_agent' AS user_agent,
       e.source, e."timestamp", e.session_id::text AS session_id, e.tx_id
FROM platform_event_store e
LEFT JOIN user_attributes u ON u.user_id = e.user_id
ORDER BY e.event_id
"""

SIGNED_UP = datetime(2025, 3, 10, 8, 30, tzinfo=UTC)
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)


def insert(conn: psycopg.Connection, user_id: uuid.UUID | None, at: datetime, metadata: dict,
           session_id: uuid.UUID | None = None) -> None:
    conn.execute("INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, entity_type,"
                 " entity_id, event_data, metadata, \"timestamp\", session_id)"
                 " VALUES (%s, 'page.viewed', 'interaction', %s, 'page', 'p-1', %s, %s, %s, %s)",
                 (uuid.uuid4(), user_id, Jsonb({"page": "/ö\"x", "n": 1.50}), Jsonb(metadata), at, session_id))


@pytest.fixture
def varied(conn: psycopg.Connection) -> psycopg.Connection:
    """Events that exercise every column the extraction shapes."""
    known, late, blank = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    conn.execute("INSERT INTO user_profiles (user_id, role, signed_up_at) VALUES (%s, 'client', %s),"
                 " (%s, 'developer', %s)", (known, SIGNED_UP, late, SIGNED_UP + 400 * DAY))
    full = {"ip_address": "73.15.216.136", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0",
            "platform": "web", "nested": {"ip_address": "kept", "list": [1, "é"]}}
    for at in (SIGNED_UP, SIGNED_UP + DAY - TICK, SIGNED_UP + DAY, SIGNED_UP + 30 * DAY + TICK, SIGNED_UP - TICK,
               SIGNED_UP - DAY, SIGNED_UP - DAY - TICK):
        insert(conn, known, at, full, session_id=uuid.uuid4())
    insert(conn, late, SIGNED_UP, {"user_agent": "curl/8.0"})  # signed up after the event: negative tenure
    insert(conn, blank, SIGNED_UP, {"ip_address": "10.0.0.1"})  # no attributes
    insert(conn, None, SIGNED_UP, {})  # no user, no metadata
    insert(conn, None, SIGNED_UP, {"ip_address": None, "user_agent": 5, "platform": "ios"})  # not strings
    insert(conn, uuid.UUID(int=0), SIGNED_UP, {"platform": "android"})
    return conn


def extracted(db: str, statement: str = "ingest/sweep_events") -> pa.Table:
    with EventReader(db) as reader:
        batches = list(reader.stream(statement, consumer="pipeline", tx_low=0, tx_high=2**62))
    return pa.Table.from_batches(batches, schema=PIPELINE_SCHEMA).sort_by("event_id")


def test_the_extracted_rows_are_those_sql_computed_from_metadata_and_users(db: str,
                                                                           varied: psycopg.Connection) -> None:
    table = extracted(db)
    with varied.cursor() as cur:
        cur.execute(COMPUTED_IN_SQL)
        expected = [dict(zip([d.name for d in cur.description], row, strict=True)) for row in cur.fetchall()]
    assert table.schema == PIPELINE_SCHEMA
    assert table.to_pylist() == expected
    tenures = {r["user_tenure_days"] for r in expected}
    assert {0, 1, 30, -1, -2, -400, None} <= tenures  # the boundaries were exercised, nulls included


def test_the_read_follows_metadata_through_the_seeds_erasure_statement(db: str, varied: psycopg.Connection) -> None:
    varied.execute("UPDATE platform_events SET metadata = metadata - 'ip_address' - 'user_agent'"
                   " WHERE metadata ? 'ip_address'")
    rows = extracted(db)
    assert rows.column("ip_address").null_count == rows.num_rows
    assert "73.15.216.136" not in str(rows.to_pylist())
    with varied.cursor() as cur:
        cur.execute(COMPUTED_IN_SQL)
        assert rows.to_pylist() == [dict(zip([d.name for d in cur.description], r, strict=True))
                                    for r in cur.fetchall()]


def test_a_months_partition_created_after_its_events_keeps_them(db: str, conn: psycopg.Connection) -> None:
    month = datetime(2031, 5, 1, tzinfo=UTC)  # beyond the partitions created ahead: the default partition
    insert(conn, None, month + 3 * DAY, {"ip_address": "10.1.2.3", "user_agent": "ua", "platform": "web"})
    assert conn.execute("SELECT ensure_event_partitions(%s, %s)", (month, month)).fetchone()[0] == 1
    row = conn.execute("SELECT e.tableoid::regclass::text, r.ip_address, r.user_agent, r.metadata"
                       " FROM platform_event_store e JOIN pipeline_store_rows r USING (event_id)").fetchone()
    assert row == ("platform_event_store_2031_05", "10.1.2.3", "ua", {"platform": "web"})
    insert(conn, None, month + 4 * DAY, {"ip_address": "10.9.9.9"})  # routed to the new partition
    assert conn.execute("SELECT metadata ->> 'ip_address' FROM platform_event_store_2031_05"
                        " ORDER BY \"timestamp\" DESC LIMIT 1").fetchone()[0] == "10.9.9.9"


@pytest.mark.parametrize("statement", ["ingest/sweep_events", "ingest/day_events", "ingest/open_failures",
                                       "governance/refreshed_events"])
def test_a_streamed_statement_reads_its_bounds_once_not_for_each_row(conn: psycopg.Connection, statement: str) -> None:
    """current_setting is only STABLE: in a scan's condition it would run (and its text be cast) for every row."""
    conn.execute("SELECT set_config('workdev.tx_low', '0', false), set_config('workdev.tx_high', '100', false),"
                 " set_config('workdev.day_start', '2026-01-01', false), set_config('workdev.day_end', '2026-01-02',"
                 " false), set_config('workdev.consumer', 'lake', false)")
    plan = [row[0] for row in conn.execute("EXPLAIN (VERBOSE) " + query(statement))]
    per_row = [line for line in plan if "Filter:" in line or "Cond:" in line]
    assert per_row and not [line for line in per_row if "current_setting" in line]


@pytest.mark.parametrize("declared", ["text", "refcursor", "unknown"])
def test_the_bounds_take_string_parameters_whatever_type_the_driver_declares(conn: psycopg.Connection,
                                                                             declared: str) -> None:
    """The Arrow driver declares a string parameter with the first type its catalog query found taking text's binary
    form: text or refcursor, in whatever order a (parallel) scan of pg_type returned them -- CI once got refcursor."""
    name = f"bounds_{declared}"
    conn.execute(f"PREPARE {name} ({', '.join([declared] * 6)}) AS {query('ingest/set_bounds')}")
    row = conn.execute(f"EXECUTE {name} ('1', '2', '2026-01-01', '2026-01-02', 'lake', '0')").fetchone()
    conn.execute(f"DEALLOCATE {name}")
    assert row == ("1", "2", "2026-01-01", "2026-01-02", "lake", "0")


def test_uuid_text_is_postgresqls_text_form_nulls_and_slices_included() -> None:
    ids = [uuid.uuid4() for _ in range(50)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    values = [None if i % 7 == 3 else u.bytes for i, u in enumerate(ids)]
    array = pa.array(values, pa.uuid())
    expected = [None if v is None else str(uuid.UUID(bytes=v)) for v in values]
    assert uuid_text(array).to_pylist() == expected
    assert uuid_text(array.slice(5, 20)).to_pylist() == expected[5:25]
    assert uuid_text(pa.chunked_array([array.slice(0, 10), array.slice(10)])).to_pylist() == expected
    assert uuid_text(array.slice(0, 0)).to_pylist() == []
    opaque = pa.array(values, pa.binary())  # the driver's form before 1.9: arrow.opaque over variable-size binary
    assert uuid_text(opaque).to_pylist() == expected
    assert uuid_text(opaque.slice(5, 20)).to_pylist() == expected[5:25]


def test_the_sweeps_read_starts_no_parallel_workers_where_the_planner_would(db: str) -> None:
    """The sweep streams its range through one COPY to one reader: parallel workers would only compete for its
    cores. Other reads (a day's, sorted) keep the server's setting, on the same connection too."""
    load_demo(db, users=50, events=30_000, days=2)
    with psycopg.connect(db, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        for setting in ("parallel_setup_cost", "parallel_tuple_cost", "min_parallel_table_scan_size"):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = 0").format(sql.Identifier(name), sql.Identifier(setting)))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("SELECT set_config('workdev.tx_low', '0', false), set_config('workdev.tx_high', %s, false)",
                     (str(2**62),))
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + query("ingest/sweep_events")))
        assert "Gather" in plan  # what the planner would do on a connection of its own

        def workers_while_streaming(reader: EventReader, *, parallel: bool) -> int:
            """The most parallel workers seen at any batch of a sweep's read (its reader held back meanwhile)."""
            seen, rows = 0, 0
            for batch in reader.stream("ingest/sweep_events", consumer="pipeline", tx_low=0, tx_high=2**62,
                                       parallel=parallel):
                rows += batch.num_rows
                seen = max(seen, conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                              "current_database() AND backend_type = 'parallel worker'").fetchone()[0])
            assert rows == 30_000
            return seen

        with EventReader(db, batch_bytes=64 * 1024) as reader:
            assert workers_while_streaming(reader, parallel=False) == 0
            assert workers_while_streaming(reader, parallel=True) > 0


def test_a_streams_batches_grow_from_the_first_size_to_the_streams(db: str) -> None:
    """The first batch is small, so that the transformation starts early; each next one is asked for at twice the
    size of the last (the driver reads its size hint before each batch) until the stream's size."""
    load_demo(db, users=50, events=6_000, days=2)
    with EventReader(db, batch_bytes=256 * 1024, first_batch_bytes=16 * 1024) as reader:
        batches = list(reader.stream("ingest/sweep_events", consumer="pipeline", tx_low=0, tx_high=2**62))
    rows = [batch.num_rows for batch in batches]
    assert sum(rows) == 6_000
    growing, steady = rows[:5], rows[5:-1]  # 16, 32, 64, 128 and 256 KiB; then 256 KiB each but the last
    assert all(1.6 < after / before < 2.5 for before, after in itertools.pairwise(growing)), rows
    assert len(steady) >= 2 and all(0.8 < n / growing[-1] < 1.25 for n in steady), rows

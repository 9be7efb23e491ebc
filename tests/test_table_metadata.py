"""The tables carry Dagster's standard table metadata: the lake's events their columns (described, personal ones
tagged), table name and owners, and on a day's materialization the table's and that day's own row counts; the
aggregations, in PostgreSQL and in the lake, their columns, table name, freshness policy and row counts."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from dagster import DagsterInstance, Definitions

from tests.ingest_helpers import days_in_postgres, demo, make_first_day_largest
from workdev_pipeline.aggregations.periods import DAILY
from workdev_pipeline.assets.keys import LAKE_EVENTS, lake_aggregations_key, postgres_aggregations_key
from workdev_pipeline.assets.standards import AGGREGATION_FRESHNESS
from workdev_pipeline.assets.table_metadata import LAKE_COLUMNS
from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA, AggregationLake
from workdev_pipeline.lake.events import LAKE_SCHEMA
from workdev_pipeline.resources.lake import LakeResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def test_the_lake_asset_declares_its_columns_table_and_owners(defs: Definitions) -> None:
    spec = defs.resolve_assets_def(LAKE_EVENTS).specs_by_key[LAKE_EVENTS]
    columns = spec.metadata["dagster/column_schema"].columns
    assert [c.name for c in columns] == LAKE_SCHEMA.names
    assert all(c.description for c in columns)
    personal = {c.name for c in columns if c.tags.get("pii") == "true"}
    assert {"user_id", "session_id", "event_data", "metadata", "geo_location"} <= personal
    assert "event_type" not in personal and personal == {n for n, (_, p) in LAKE_COLUMNS.items() if p}
    assert spec.metadata["dagster/table_name"] == "lake.platform_events"
    assert spec.owners and spec.tags["pii"] == "true"


def test_each_day_of_a_range_run_reports_its_own_figures(db: str, defs: Definitions, lake: LakeResource,
                                                         instance: DagsterInstance) -> None:
    """Three days rebuilt in one run (a backfill's single run): each day's materialization carries that day's rows
    (PostgreSQL's count of it), the bytes of its own files (the Delta log's sizes), its seconds and events per
    second; the run's totals are in ``run``; the table's rows in ``dagster/row_count``."""
    demo(db, 1_800, days=4)
    with psycopg.connect(db) as conn:
        make_first_day_largest(db, sorted(days_in_postgres(conn))[:3])  # days of different sizes, whatever the hour
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    days = [d.isoformat() for d in lake.events().snapshot().days()[:3]]
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[LAKE_EVENTS], tags={RANGE_START: days[0], RANGE_END: days[-1]})
    assert result.success
    meta = {m.partition: m.metadata for m in result.asset_materializations_for_node("lake__lake_events")}
    assert sorted(meta) == days
    with psycopg.connect(db) as conn:
        expected = {d: n for d, n in days_in_postgres(conn).items() if d in days}
    files = lake.events().snapshot().files().to_pylist()
    day_bytes = {d: sum(f["size_bytes"] for f in files if f["event_date"].isoformat() == d) for d in days}
    assert len(set(expected.values())) > 1  # days of different sizes: a run total on each day could not pass
    assert {d: m["rows_loaded"].value for d, m in meta.items()} == expected
    assert {d: m["dagster/partition_row_count"].value for d, m in meta.items()} == expected
    assert {d: m["bytes_written"].value for d, m in meta.items()} == day_bytes
    for day, m in meta.items():
        seconds = m["seconds"].value
        # seconds are shown to the millisecond, the rate from the unrounded time: a day read in ~25 ms is off by
        # up to 0.5 ms / its seconds besides
        assert seconds > 0 and m["events_per_second"].value * seconds == pytest.approx(expected[day],
                                                                                        rel=0.02 + 0.0005 / seconds)
    run = meta[days[0]]["run"].value
    assert all(m["run"].value == run for m in meta.values())
    assert run["rows_loaded"] == sum(expected.values()) and run["bytes_written"] == sum(day_bytes.values())
    assert run["rows_by_day"] == expected and sum(m["seconds"].value for m in meta.values()) <= run["seconds"]
    assert {m["dagster/row_count"].value for m in meta.values()} == {
        lake.events().snapshot().query("SELECT count(*) FROM platform_events")[0][0]}
    assert {m["dagster/table_name"].value for m in meta.values()} == {"lake.platform_events"}


def test_the_aggregation_assets_declare_their_tables_columns_and_freshness(defs: Definitions) -> None:
    for key_of, table, amount in ((postgres_aggregations_key, "postgres.event_aggregations", "numeric"),
                                  (lake_aggregations_key, "lake.event_aggregations", "decimal128(38, 9)")):
        for granularity in ("hourly", "daily", "weekly"):
            key = key_of(granularity)
            spec = defs.resolve_assets_def(key).specs_by_key[key]
            columns = {c.name: c for c in spec.metadata["dagster/column_schema"].columns}
            assert list(columns) == AGGREGATION_SCHEMA.names and all(c.description for c in columns.values())
            assert columns["amount_sum"].type == amount
            assert spec.metadata["dagster/table_name"] == table
            assert spec.freshness_policy == AGGREGATION_FRESHNESS[granularity]


def test_each_period_of_an_aggregation_range_run_reports_its_own_figures(
        db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    """Two closed days aggregated in one run: in each store, each day's materialization carries that day's rows and
    events (as PostgreSQL's event_aggregations holds them) as its own and as ``dagster/partition_row_count``; the
    table name and the rows of that aggregation type the table holds after the write (``dagster/row_count``); the
    run's totals in ``run`` (the lake's with its commits and files); and the lake's Delta version."""
    demo(db, 1_200, days=3)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    day = lake.events().snapshot().days()[1]
    first = day - timedelta(days=1)
    pg, lk = postgres_aggregations_key("daily"), lake_aggregations_key("daily")
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[pg, lk], tags={RANGE_START: first.isoformat(), RANGE_END: day.isoformat()})
    assert result.success
    meta: dict = {}
    for e in result.get_asset_materialization_events():
        meta.setdefault(e.asset_key, {})[e.partition] = e.materialization.metadata
    with psycopg.connect(db) as conn:
        held = {d.isoformat(): (rows, events) for d, rows, events in conn.execute(
            "SELECT (period_start AT TIME ZONE 'UTC')::date, count(*), sum(total_events) FROM event_aggregations "
            "WHERE aggregation_type = 'daily' GROUP BY 1").fetchall()}
    aggregates = AggregationLake(lake.location())
    assert sorted(held) == [first.isoformat(), day.isoformat()] and len(set(held.values())) == 2
    for key, table in ((pg, "postgres.event_aggregations"), (lk, "lake.event_aggregations")):
        assert {p: (m["rows_written"].value, m["events"].value) for p, m in meta[key].items()} == held
        assert {p: m["dagster/partition_row_count"].value for p, m in meta[key].items()} == {
            p: rows for p, (rows, _) in held.items()}
        assert {m["dagster/table_name"].value for m in meta[key].values()} == {table}
        assert {m["dagster/row_count"].value for m in meta[key].values()} == {sum(r for r, _ in held.values())}
        run = meta[key][day.isoformat()]["run"].value
        assert (run["periods"], run["rows_written"]) == (2, sum(r for r, _ in held.values()))
    lake_run = meta[lk][day.isoformat()]["run"].value
    assert lake_run["commits"] >= 1 and lake_run["bytes_written"] > 0 and "commits" not in meta[pg][day.isoformat()][
        "run"].value
    assert aggregates.dataset(DAILY).count_rows() == sum(r for r, _ in held.values())
    assert {m["lake_version"].value for m in meta[lk].values()} == {aggregates.version()}

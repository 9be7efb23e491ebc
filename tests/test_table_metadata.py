"""The tables carry Dagster's standard table metadata: the lake's events their columns (described, personal ones
tagged), table name and owners, and on a day's materialization the table's and that day's own row counts; the
aggregations, in PostgreSQL and in the lake, their columns, table name, freshness policy and row counts."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from dagster import DagsterInstance, Definitions

from tests.ingest_helpers import days_in_postgres, demo
from workdev_pipeline.aggregations.periods import DAILY
from workdev_pipeline.assets.keys import LAKE_EVENTS, lake_aggregations_key, postgres_aggregations_key
from workdev_pipeline.assets.standards import AGGREGATION_FRESHNESS
from workdev_pipeline.assets.table_metadata import LAKE_COLUMNS
from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA, AggregationLake
from workdev_pipeline.lake.events import LAKE_SCHEMA
from workdev_pipeline.resources.lake import LakeResource


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


def test_a_day_materialization_reports_that_days_row_count(db: str, defs: Definitions, lake: LakeResource,
                                                            instance: DagsterInstance) -> None:
    demo(db, 1_200, days=3)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    day = lake.events().snapshot().days()[1]
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[LAKE_EVENTS], partition_key=day.isoformat())
    assert result.success
    with psycopg.connect(db) as conn:
        expected = days_in_postgres(conn)[day.isoformat()]
    meta = result.asset_materializations_for_node("lake__lake_events")[0].metadata
    assert 0 < meta["dagster/partition_row_count"].value == expected
    assert meta["dagster/row_count"].value == sum(n for _, n in lake.events().snapshot().query(
        "SELECT event_date, count(*) FROM platform_events GROUP BY 1"))
    assert meta["dagster/table_name"].value == "lake.platform_events"


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


def test_an_aggregation_materialization_reports_each_stores_table_and_row_counts(
        db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    """One closed day aggregated: in each store, the table name, the rows of that aggregation type the table holds
    after the write (``dagster/row_count``), the day's own rows (``dagster/partition_row_count``); and the lake's
    Delta version."""
    demo(db, 1_200, days=3)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    day = lake.events().snapshot().days()[1]
    job = defs.resolve_implicit_global_asset_job_def()
    pg, lk = postgres_aggregations_key("daily"), lake_aggregations_key("daily")
    for partition in (day - timedelta(days=1), day):  # the second: the table holds two days, the partition one
        result = job.execute_in_process(instance=instance, asset_selection=[pg, lk],
                                        partition_key=partition.isoformat())
        assert result.success
    meta = {e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()}
    with psycopg.connect(db) as conn:
        held = dict(conn.execute("SELECT period_start::date, count(*) FROM event_aggregations WHERE "
                                 "aggregation_type = 'daily' GROUP BY 1").fetchall())
    aggregates = AggregationLake(lake.location())
    assert len(held) == 2 and held[day] > 0
    assert meta[pg]["dagster/table_name"].value == "postgres.event_aggregations"
    assert meta[lk]["dagster/table_name"].value == "lake.event_aggregations"
    assert meta[pg]["dagster/row_count"].value == sum(held.values())
    assert meta[lk]["dagster/row_count"].value == aggregates.dataset(DAILY).count_rows() == sum(held.values())
    assert meta[pg]["dagster/partition_row_count"].value == meta[lk]["dagster/partition_row_count"].value == held[day]
    assert meta[lk]["lake_version"].value == aggregates.version()

"""The lake's events asset carries Dagster's standard table metadata: its columns (described, personal ones
tagged), its table name and owners, and on a day's materialization that day's own row count."""

from __future__ import annotations

import psycopg
from dagster import DagsterInstance, Definitions

from tests.ingest_helpers import days_in_postgres, demo
from workdev_pipeline.assets.keys import LAKE_EVENTS
from workdev_pipeline.assets.table_metadata import LAKE_COLUMNS
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

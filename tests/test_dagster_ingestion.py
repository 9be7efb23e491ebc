"""The ingestion assets, checks and sensor through Dagster's own APIs, against a real PostgreSQL."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import psycopg
from dagster import (
    AssetCheckKey,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    SensorResult,
    build_sensor_context,
    materialize,
)
from dagster._core.storage.dagster_run import DagsterRun

from tests.ingest_helpers import days_in_postgres, demo, loadable_ids, warehouse_ids
from workdev_pipeline.assets.checks import (
    pending_backlog_fresh,
)
from workdev_pipeline.assets.ingestion import ENRICHED_EVENTS, INCOMING_EVENTS, WAREHOUSE_EVENTS, incoming_events
from workdev_pipeline.resources.local import LocalWarehouseResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.sensors import ingest_sensor

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"



def resources(db: str, warehouse: LocalWarehouseResource) -> dict[str, object]:
    return {"postgres": PostgresResource(database_url=db), "warehouse": warehouse}


def run_job(defs: Definitions, name: str, instance: DagsterInstance, **kwargs):
    return defs.resolve_job_def(name).execute_in_process(instance=instance, **kwargs)


def test_sensor_requests_a_sweep_and_the_run_loads_every_event(db: str, defs: Definitions,
                                                               warehouse: LocalWarehouseResource,
                                                               instance: DagsterInstance) -> None:
    resources = {"postgres": PostgresResource(database_url=db), "warehouse": warehouse}
    idle = ingest_sensor(build_sensor_context(instance=instance, resources=resources))
    assert isinstance(idle, SensorResult) and not idle.run_requests

    demo(db, 2_000)
    context = build_sensor_context(instance=instance, resources=resources, cursor=idle.cursor)
    result = ingest_sensor(context)
    assert len(result.run_requests) == 1
    observed = result.asset_events[0]
    assert observed.asset_key == INCOMING_EVENTS and observed.metadata["pending"].value == 2_000

    # the run it requests, executed for real
    run = run_job(defs, "ingest_events", instance, tags=result.run_requests[0].tags)
    assert run.success
    materialization = next(m for m in run.asset_materializations_for_node("pipeline__enriched_events")
                           if m.asset_key == ENRICHED_EVENTS)
    assert materialization.metadata["rows_loaded"].value + materialization.metadata["rows_failed"].value == 2_000
    assert materialization.metadata["events_per_second"].value > 0
    # the sweep appended to day partitions of the warehouse table: they show as materialized
    with psycopg.connect(db) as conn:
        days = set(days_in_postgres(conn))
        assert sorted(warehouse_ids(warehouse.files())) == sorted(loadable_ids(conn))
    assert instance.get_materialized_partitions(WAREHOUSE_EVENTS) == days

    # nothing pending any more: no run requested
    after = ingest_sensor(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert not after.run_requests and after.asset_events[0].metadata["pending"].value == 0


def test_sensor_holds_back_while_a_sweep_is_in_flight(db: str, warehouse: LocalWarehouseResource,
                                                      instance: DagsterInstance) -> None:
    demo(db, 100)
    instance.add_run(DagsterRun(job_name="ingest_events", run_id="a" * 36, status=DagsterRunStatus.STARTED))
    resources = {"postgres": PostgresResource(database_url=db), "warehouse": warehouse}
    result = ingest_sensor(build_sensor_context(instance=instance, resources=resources))
    assert not result.run_requests and result.asset_events[0].metadata["pending"].value == 100


def test_backfill_of_three_days_twice_gives_identical_files_and_touches_nothing_else(
        db: str, defs: Definitions, warehouse: LocalWarehouseResource, instance: DagsterInstance) -> None:
    demo(db, 3_000, days=6)
    assert run_job(defs, "ingest_events", instance).success
    files = warehouse.files()
    days = files.days()
    target, others = days[1:4], days[:1] + days[4:]
    untouched = {p: p.read_bytes() for d in others for p in files.day_files(d)}
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {RANGE_START: target[0].isoformat(), RANGE_END: target[-1].isoformat()}

    first = job.execute_in_process(instance=instance, asset_selection=[WAREHOUSE_EVENTS], tags=tags)
    assert first.success
    snapshot = {p: p.read_bytes() for d in target for p in files.day_files(d)}
    second = job.execute_in_process(instance=instance, asset_selection=[WAREHOUSE_EVENTS], tags=tags)
    assert second.success
    assert {p: p.read_bytes() for d in target for p in files.day_files(d)} == snapshot
    assert {p: p.read_bytes() for d in others for p in files.day_files(d)} == untouched
    with psycopg.connect(db) as conn:
        expected = days_in_postgres(conn)
    meta = second.asset_materializations_for_node("warehouse__platform_events")[0].metadata
    assert meta["rows_loaded"].value == sum(expected[d.isoformat()] for d in target)
    assert len(first.get_asset_materialization_events()) == 3  # one per day partition of the range


def test_partition_checks_pass_then_catch_a_duplicated_file(db: str, defs: Definitions,
                                                            warehouse: LocalWarehouseResource,
                                                            instance: DagsterInstance) -> None:
    demo(db, 1_500, days=2)
    assert run_job(defs, "ingest_events", instance).success
    day = warehouse.files().days()[-1]

    def run_checks() -> dict[str, bool]:
        # the partition goes in as a tag (as the UI sends it): execute_in_process(partition_key=) only
        # validates keys against selected assets, and this job selects checks alone
        result = run_job(defs, "check_warehouse_days", instance, tags={"dagster/partition": day.isoformat()})
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    assert run_checks() == {"reconciles_with_postgres": True, "no_duplicate_event_ids": True,
                            "parquet_schema_matches": True}
    original = warehouse.files().day_files(day)[0]
    shutil.copy(original, original.with_name("part-copied-by-hand.parquet"))
    verdicts = run_checks()
    assert verdicts["no_duplicate_event_ids"] is False and verdicts["reconciles_with_postgres"] is False
    assert Counter(warehouse_ids(warehouse.files())).most_common(1)[0][1] == 2


def test_backlog_check_and_replay_job(db: str, defs: Definitions, warehouse: LocalWarehouseResource,
                                      instance: DagsterInstance, tmp_path: Path) -> None:
    demo(db, 300)
    backlog = AssetSelection.checks(AssetCheckKey(INCOMING_EVENTS, "pending_backlog_fresh"))
    result = materialize([incoming_events, pending_backlog_fresh], selection=backlog, instance=instance,
                         resources=resources(db, warehouse))
    evaluation = result.get_asset_check_evaluations()[0]
    assert evaluation.passed and evaluation.metadata["pending"].value == 300

    root = Path(warehouse.data_dir)
    root.mkdir(parents=True)
    (root / "_staging").write_text("blocked")  # the warehouse cannot be written
    failed = run_job(defs, "ingest_events", instance, raise_on_error=False)
    assert not failed.success
    result = materialize([incoming_events, pending_backlog_fresh], selection=backlog, instance=instance,
                         resources=resources(db, warehouse))
    assert not result.get_asset_check_evaluations()[0].passed  # the dead letter is not empty

    (root / "_staging").unlink()
    replay = run_job(defs, "replay_failed_events", instance)
    assert replay.success
    with psycopg.connect(db) as conn:
        assert sorted(warehouse_ids(warehouse.files())) == sorted(loadable_ids(conn))
        failed_now = "SELECT count(*) FROM platform_events WHERE processing_status = 'failed'"
        assert conn.execute(failed_now).fetchone()[0] == 0

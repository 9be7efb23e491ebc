"""The lake's per-day checks tell the truth in the instance (what the UI shows): every sweep, rebuild, backfill in
one run and ``check_lake_days`` records each day's verdict against that day -- Passed or Failed, never Skipped --
and the backlog check is evaluated on every tick of the ingest sensor, so a lagging pipeline reads red at once.
Real PostgreSQL, a real lake, Dagster's own execution and the real sensor, its results recorded in the instance as
the daemon records them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from dagster import AssetCheckKey, DagsterInstance, Definitions, build_sensor_context
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from tests.ingest_helpers import demo
from tests.waiting import wait_until
from workdev_pipeline.aggregations.periods import HOURLY
from workdev_pipeline.assets.aggregations import lake_key, postgres_key
from workdev_pipeline.assets.checks import BACKLOG_CHECK
from workdev_pipeline.assets.day_checks import LAKE_DAY_CHECKS
from workdev_pipeline.assets.ingestion import LAKE_EVENTS
from workdev_pipeline.assets.partitions import hourly_partitions
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.ingest.backlog import Backlog
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.sensors import ingest_sensor

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
KEYS = [AssetCheckKey(LAKE_EVENTS, name) for name in LAKE_DAY_CHECKS]
PASSED, FAILED = AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED


def statuses(instance: DagsterInstance, days: list[str]) -> dict[tuple[str, str], tuple[str, str, bool]]:
    """(check, day) -> (status, run that recorded it, whether it is about the day's latest materialization), as the
    instance holds them for the UI's partition view of each check."""
    return {(i.check_key.name, i.partition_key): (i.latest_execution_status, i.latest_planned_run_id, i.is_current)
            for i in instance.event_log_storage.get_asset_check_partition_info(KEYS, partition_keys=days)}


def every(days: list[str], status: AssetCheckExecutionRecordStatus, run_id: str) -> dict:
    return {(name, day): (status, run_id, True) for name in LAKE_DAY_CHECKS for day in days}


def test_every_sweep_records_the_checks_of_the_days_it_wrote(db: str, defs: Definitions, lake: LakeResource,
                                                             instance: DagsterInstance) -> None:
    demo(db, 1_200, days=3)
    sweep = defs.resolve_job_def("ingest_events").execute_in_process(instance=instance)
    assert sweep.success
    days = [d.isoformat() for d in lake.events().snapshot().days()]
    assert len(days) >= 3
    assert statuses(instance, days) == every(days, PASSED, sweep.run_id)
    decoded = {e.partition: e.metadata for e in sweep.get_asset_check_evaluations()
               if e.check_name == "day_files_decode"}
    assert all(m["files_checked"].value == m["files_of_the_day"].value == 1 for m in decoded.values())

    # a second sweep writes today only: today's checks are its own, the other days keep the first sweep's
    demo(db, 50, days=0.01, seed=9)
    again = defs.resolve_job_def("ingest_events").execute_in_process(instance=instance)
    assert again.success
    written = {m.partition for m in again.get_asset_materialization_events()
               if m.asset_key == LAKE_EVENTS}
    assert written and set(days) - written
    found = statuses(instance, days)
    assert {k: v for k, v in found.items() if k[1] in written} == every(sorted(written), PASSED, again.run_id)
    assert {k: v for k, v in found.items() if k[1] not in written} == every(
        sorted(set(days) - written), PASSED, sweep.run_id)
    # the deep check decoded the second sweep's own file of the day, not the day's first one again
    decoded = {e.partition: e.metadata for e in again.get_asset_check_evaluations()
               if e.check_name == "day_files_decode"}
    assert {d: (m["files_checked"].value, m["files_of_the_day"].value) for d, m in decoded.items()} == {
        d: (1, 2 if d in days else 1) for d in written}


def test_a_backfill_in_one_run_and_check_lake_days_record_each_day(db: str, defs: Definitions, lake: LakeResource,
                                                                    instance: DagsterInstance) -> None:
    demo(db, 1_500, days=4)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    events = lake.events()
    days = [d.isoformat() for d in events.snapshot().days()][:3]
    range_tags = {RANGE_START: days[0], RANGE_END: days[-1]}

    # three days rebuilt in one run (a backfill with BackfillPolicy.single_run): each day's checks are that run's
    backfill = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[LAKE_EVENTS], tags=range_tags)
    assert backfill.success
    assert statuses(instance, days) == every(days, PASSED, backfill.run_id)
    assert sorted(e.partition for e in backfill.get_asset_check_evaluations()) == sorted(
        d for d in days for _ in LAKE_DAY_CHECKS)  # one evaluation per check and day, none without a day

    # the middle day's rows appended once more by a writer that bypassed the ingestor: check_lake_days over the
    # range (the launchpad's range tags) fails that day and passes the others
    copied = events.snapshot().dataset(days=[events.snapshot().days()[1]]).to_table()
    events.append([copied], app_id="copied-by-hand", version=1)
    checked = defs.resolve_job_def("check_lake_days").execute_in_process(instance=instance, tags=range_tags)
    assert checked.success  # a failed check is a verdict, not a failed run
    found = statuses(instance, days)
    assert {k for k, (status, run, _) in found.items() if status == FAILED and run == checked.run_id} == {
        ("reconciles_with_postgres", days[1]), ("no_duplicate_event_ids", days[1])}
    assert {k for k, (status, run, _) in found.items() if status == PASSED and run == checked.run_id} == {
        (name, day) for name in LAKE_DAY_CHECKS for day in days} - {
        ("reconciles_with_postgres", days[1]), ("no_duplicate_event_ids", days[1])}
    failure = next(e for e in checked.get_asset_check_evaluations()
                   if e.check_name == "no_duplicate_event_ids" and e.partition == days[1])
    assert failure.metadata["duplicates_shown"].value > 0 and "held more than once" in failure.description

    # the backfill again repairs the day: all Passed, about the new materializations
    healed = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[LAKE_EVENTS], tags=range_tags)
    assert healed.success and statuses(instance, days) == every(days, PASSED, healed.run_id)


def test_check_lake_days_without_a_day_checks_every_day_the_lake_holds(
        db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    """What "Execute all" on the Checks tab launches: no partition. Every day is checked and recorded against its
    day, the summary without one (no 'Cannot access partition_key for a non-partitioned run')."""
    demo(db, 600, days=3)
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    days = [d.isoformat() for d in lake.events().snapshot().days()]
    run = defs.resolve_job_def("check_lake_days").execute_in_process(instance=instance)
    assert run.success
    assert statuses(instance, days) == every(days, PASSED, run.run_id)
    summaries = {e.check_name: e for e in run.get_asset_check_evaluations() if e.partition is None}
    assert set(summaries) == set(LAKE_DAY_CHECKS)
    assert all(e.passed and e.description == f"{len(days)} of {len(days)} partition(s) passed"
               for e in summaries.values())


def test_a_range_of_hours_records_amount_sums_fit_hour_by_hour(db: str, defs: Definitions,
                                                                 instance: DagsterInstance, now: datetime) -> None:
    """The aggregations' period check in a range run (a backfill's single run, or the automation's): one verdict per
    hour, the hour holding a sum too wide for DECIMAL(38, 9) Failed, the others Passed."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    hours = [day + timedelta(hours=h) for h in range(9, 13)]
    with AnalyticsClient(db, user_id=uuid.uuid4()) as client:
        client.emit_many([{"event_type": "project.created", "user_id": client.user_id,
                           "event_data": {"title": "Wide", "budget": budget, "project_type": "fixed"},
                           "timestamp": at + timedelta(minutes=1)}
                          for at, budget in ((hours[1], 10**30), (hours[2], 1), (hours[3], 2))])
    assert defs.resolve_job_def("ingest_events").execute_in_process(instance=instance).success
    keys = [hourly_partitions.get_partition_key_for_timestamp(h.timestamp()) for h in hours]
    run = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[postgres_key(HOURLY), lake_key(HOURLY)],
        tags={RANGE_START: keys[0], RANGE_END: keys[-1]})
    assert run.success
    check = AssetCheckKey(lake_key(HOURLY), "amount_sums_fit")
    found = {i.partition_key: (i.latest_execution_status, i.latest_planned_run_id)
             for i in instance.event_log_storage.get_asset_check_partition_info([check], partition_keys=keys)}
    assert found == {k: (FAILED if k == keys[1] else PASSED, run.run_id) for k in keys}
    [wide] = [e for e in run.get_asset_check_evaluations() if e.check_name == check.name and e.partition == keys[1]]
    assert wide.metadata["overflow_rows"].value == 1 and "project.created" in wide.description


def test_a_transaction_held_open_turns_the_backlog_check_red_within_two_sensor_ticks(
        db: str, lake: LakeResource, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    resources = {"postgres": PostgresResource(database_url=db), "lake": lake}
    cursor: list[str | None] = [None]

    def tick() -> tuple[AssetCheckExecutionRecordStatus, str | None]:
        """One tick of the ingest sensor, its events recorded as the daemon records them; the backlog check's
        latest status and description as the instance holds them."""
        result = ingest_sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources,
                                                                  cursor=cursor[0]))
        cursor[0] = result.cursor
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([BACKLOG_CHECK])[BACKLOG_CHECK]
        return record.status, record.event.dagster_event.event_specific_data.description

    limit = 3.0
    monkeypatch.setenv("WORKDEV_MAX_PENDING_AGE_SECONDS", str(limit))
    demo(db, 200)
    lake.ingestor(db).sweep()
    assert tick() == (PASSED, None)
    with psycopg.connect(db) as holder:
        holder.execute("SELECT pg_current_xact_id()")  # a transaction with an id, left open
        demo(db, 150, seed=8)  # committed after it began: no sweep may take them while it is open
        assert lake.ingestor(db).sweep().events_loaded == 0
        assert tick()[0] == PASSED  # pending, but younger than the limit

        def backlog() -> Backlog:
            with psycopg.connect(db) as conn:
                return Backlog.read(conn, lake.consumer)

        wait_until(backlog, f"the oldest pending event to be older than {limit} s", timeout=60, interval=0.5,
                   until=lambda b: b.oldest_pending_seconds > limit)
        status, description = tick()  # the next tick: red
        assert status == FAILED and description.startswith("the oldest pending event waits")
        assert f"(limit {limit:.0f} s)" in description
        holder.rollback()
    assert lake.ingestor(db).sweep().events_loaded == 150
    assert tick() == (PASSED, None)  # caught up: green on the next tick

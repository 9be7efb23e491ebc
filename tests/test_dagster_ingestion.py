"""The ingestion assets, checks and sensor through Dagster's own APIs, against a real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import psycopg
import pytest
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

from tests.ingest_helpers import (
    REPO,
    accept_any_budget,
    days_in_postgres,
    demo,
    emit_bad_budgets,
    lake_ids,
    loadable_ids,
    wait_until_lock_released,
)
from tests.waiting import wait_until
from workdev_pipeline.assets.checks import (
    pending_backlog_fresh,
)
from workdev_pipeline.assets.ingestion import incoming_events
from workdev_pipeline.assets.keys import ENRICHED_EVENTS, INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.sensors import ingest_sensor

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def resources(db: str, lake: LakeResource) -> dict[str, object]:
    return {"postgres": PostgresResource(database_url=db), "lake": lake}


def run_job(defs: Definitions, name: str, instance: DagsterInstance, **kwargs):
    return defs.resolve_job_def(name).execute_in_process(instance=instance, **kwargs)


def test_sensor_requests_a_sweep_and_the_run_loads_every_event(db: str, defs: Definitions, lake: LakeResource,
                                                               instance: DagsterInstance) -> None:
    resources = {"postgres": PostgresResource(database_url=db), "lake": lake}
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
    # the sweep is one Delta commit (after the table's creation), named in the metadata
    assert lake.events().version() == materialization.metadata["lake_version"].value == 1
    # the sweep appended to day partitions of the lake table: they show as materialized, with that version
    with psycopg.connect(db) as conn:
        per_day = days_in_postgres(conn)
        assert sorted(lake_ids(lake.events())) == sorted(loadable_ids(conn))
    days = set(per_day)
    assert instance.get_materialized_partitions(LAKE_EVENTS) == days
    day_events = [m for m in run.asset_materializations_for_node("pipeline__enriched_events")
                  if m.asset_key == LAKE_EVENTS]
    assert {m.partition for m in day_events} == days
    assert {m.metadata["lake_version"].value for m in day_events} == {1}
    # each day with the standard table figures: the table's rows and the day's own, as the lake holds them
    assert {m.partition: m.metadata["dagster/partition_row_count"].value for m in day_events} == per_day
    assert {m.metadata["dagster/row_count"].value for m in day_events} == {sum(per_day.values())}
    assert {m.metadata["dagster/table_name"].value for m in day_events} == {"lake.platform_events"}

    # nothing pending any more: no run requested
    after = ingest_sensor(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert not after.run_requests and after.asset_events[0].metadata["pending"].value == 0

    # a second sweep appending to the same days: each day's figure is the day's rows now, not those appended
    demo(db, 300, seed=8)
    second = run_job(defs, "ingest_events", instance)
    with psycopg.connect(db) as conn:
        per_day = days_in_postgres(conn)
    day_events = [m for m in second.asset_materializations_for_node("pipeline__enriched_events")
                  if m.asset_key == LAKE_EVENTS]
    assert any(m.metadata["rows_loaded"].value < per_day[m.partition] for m in day_events)
    assert {m.partition: m.metadata["dagster/partition_row_count"].value for m in day_events} == {
        m.partition: per_day[m.partition] for m in day_events}
    assert {m.metadata["dagster/row_count"].value for m in day_events} == {sum(per_day.values())}


def test_a_sweep_records_when_it_read_its_first_event(db: str, defs: Definitions, lake: LakeResource,
                                                     instance: DagsterInstance) -> None:
    """The sweep's materialization says when its first event was read and how long after its process started (the
    run's fixed cost: start-up, imports, code location, resources, claim); a sweep that read nothing says neither."""
    demo(db, 500)
    before = time.time()
    run = run_job(defs, "ingest_events", instance)
    after = time.time()
    metadata = next(m for m in run.asset_materializations_for_node("pipeline__enriched_events")
                    if m.asset_key == ENRICHED_EVENTS).metadata
    read_at = metadata["first_event_read_at"].value
    assert before < read_at < after
    # from this process's start as the kernel records it (psutil rounds the boot time to the second)
    started = psutil.Process().create_time()
    assert metadata["seconds_before_first_event"].value == pytest.approx(read_at - started, abs=1.5)

    idle = run_job(defs, "ingest_events", instance)
    metadata = next(m for m in idle.asset_materializations_for_node("pipeline__enriched_events")
                    if m.asset_key == ENRICHED_EVENTS).metadata
    assert metadata["status"].value == "idle"
    assert "first_event_read_at" not in metadata and "seconds_before_first_event" not in metadata


def test_sensor_holds_back_while_a_sweep_is_in_flight(db: str, lake: LakeResource,
                                                      instance: DagsterInstance) -> None:
    demo(db, 100)
    instance.add_run(DagsterRun(job_name="ingest_events", run_id="a" * 36, status=DagsterRunStatus.STARTED))
    resources = {"postgres": PostgresResource(database_url=db), "lake": lake}
    result = ingest_sensor(build_sensor_context(instance=instance, resources=resources))
    assert not result.run_requests and result.asset_events[0].metadata["pending"].value == 100


def test_backfill_of_three_days_twice_is_one_commit_each_same_rows_and_touches_nothing_else(
        db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    demo(db, 3_000, days=6)
    assert run_job(defs, "ingest_events", instance).success
    events = lake.events()
    days = events.snapshot().days()
    target, others = days[1:4], days[:1] + days[4:]
    untouched = {d: events.snapshot().day_files(d) for d in others}
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {RANGE_START: target[0].isoformat(), RANGE_END: target[-1].isoformat()}

    def target_rows() -> list[tuple]:
        return sorted(events.snapshot().query("SELECT * FROM platform_events", days=target))

    before = events.version()
    first = job.execute_in_process(instance=instance, asset_selection=[LAKE_EVENTS], tags=tags)
    assert first.success
    assert events.version() == before + 1  # the 3-day range: one predicate overwrite, one commit
    rows, replaced = target_rows(), {d: events.snapshot().day_files(d) for d in target}
    second = job.execute_in_process(instance=instance, asset_selection=[LAKE_EVENTS], tags=tags)
    assert second.success
    assert events.version() == before + 2
    assert target_rows() == rows  # idempotent: the very same rows (ingested_at included)
    assert all(set(events.snapshot().day_files(d)).isdisjoint(replaced[d]) for d in target)  # written anew
    assert {d: events.snapshot().day_files(d) for d in others} == untouched  # other days: the same files
    with psycopg.connect(db) as conn:
        expected = days_in_postgres(conn)
    days_meta = {m.partition: m.metadata for m in second.asset_materializations_for_node("lake__lake_events")}
    assert {d: m["rows_loaded"].value for d, m in days_meta.items()} == {d.isoformat(): expected[d.isoformat()]
                                                                         for d in target}  # each day its own rows
    meta = days_meta[target[0].isoformat()]
    assert meta["run"].value["rows_loaded"] == sum(expected[d.isoformat()] for d in target)  # the run's total
    assert meta["lake_version"].value == before + 2
    assert len(first.get_asset_materialization_events()) == 3  # one per day partition of the range


def test_partition_checks_pass_then_catch_a_duplicated_commit(db: str, defs: Definitions, lake: LakeResource,
                                                              instance: DagsterInstance) -> None:
    demo(db, 1_500, days=2)
    assert run_job(defs, "ingest_events", instance).success
    events = lake.events()
    day = events.snapshot().days()[-1]

    def run_checks() -> dict[str, bool]:
        # the day as the launchpad's partition picker gives it (the job is partitioned by the daily partitions)
        result = run_job(defs, "check_lake_days", instance, partition_key=day.isoformat())
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    assert run_checks() == {"reconciles_with_postgres": True, "no_duplicate_event_ids": True,
                            "parquet_schema_matches": True, "day_files_decode": True}
    # the day's rows appended once more, by hand (a writer that bypassed the ingestor)
    copied = events.snapshot().dataset(days=[day]).to_table()
    before = events.version()
    assert events.append([copied], app_id="copied-by-hand", version=1).version == before + 1
    verdicts = run_checks()
    assert verdicts["no_duplicate_event_ids"] is False and verdicts["reconciles_with_postgres"] is False
    assert Counter(lake_ids(events)).most_common(1)[0][1] == 2


def test_a_failed_sweep_run_leaves_events_pending_the_sensor_backs_off_then_the_next_run_heals(
        db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    demo(db, 300)
    backlog = AssetSelection.checks(AssetCheckKey(INCOMING_EVENTS, "pending_backlog_fresh"))

    def check():
        return materialize([incoming_events, pending_backlog_fresh], selection=backlog, instance=instance,
                           resources=resources(db, lake)).get_asset_check_evaluations()[0]

    assert check().passed and check().metadata["pending"].value == 300
    root = Path(lake.location().root)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("blocked")  # the lake's location cannot be written
    failed = run_job(defs, "ingest_events", instance, raise_on_error=False)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "its events stay pending" in failure.description and failure.metadata["error_kind"].text.startswith("lake")
    verdict = check()  # red: pending because of the failed sweep, and the dead letter empty
    assert not verdict.passed and verdict.metadata["dead_letter"].value == 0
    assert verdict.metadata["pending"].value == 300 and verdict.metadata["failed_sweep_runs"].value == 1
    assert "pending because the last sweep failed transiently: lake" in verdict.description

    # the sensor keeps requesting, with backoff: not right after the failure...
    context = build_sensor_context(instance=instance, resources=resources(db, lake))
    held = ingest_sensor(context)
    assert not held.run_requests and held.asset_events[0].metadata["next_sweep_in_seconds"].value > 0
    with psycopg.connect(db, autocommit=True) as conn:  # ...but once the backoff (30 s after one failure) is over
        conn.execute("UPDATE pipeline_watermarks SET last_failed_at = now() - interval '31 seconds'")
    again = ingest_sensor(build_sensor_context(instance=instance, resources=resources(db, lake), cursor=held.cursor))
    assert len(again.run_requests) == 1

    root.unlink()  # the fault is over: the requested run delivers every event once, nothing to replay
    assert run_job(defs, "ingest_events", instance, tags=again.run_requests[0].tags).success
    with psycopg.connect(db) as conn:
        assert sorted(lake_ids(lake.events())) == sorted(loadable_ids(conn))
        assert conn.execute("SELECT count(*) FROM platform_events WHERE processing_status <> 'processed' "
                            "AND processing_status <> 'failed'").fetchone()[0] == 0
    assert check().metadata["failed_sweep_runs"].value == 0


def test_replay_job(db: str, defs: Definitions, lake: LakeResource, instance: DagsterInstance) -> None:
    demo(db, 300)
    bad = emit_bad_budgets(db, 5)
    assert run_job(defs, "ingest_events", instance).success
    with psycopg.connect(db, autocommit=True) as conn:
        accept_any_budget(conn)
    assert run_job(defs, "replay_failed_events", instance).success
    with psycopg.connect(db) as conn:
        assert set(map(str, bad)) <= set(lake_ids(lake.events()))
        assert sorted(lake_ids(lake.events())) == sorted(loadable_ids(conn))
        assert conn.execute("SELECT count(*) FROM platform_events WHERE event_id = ANY(%s) "
                            "AND processing_status = 'processed'", (bad,)).fetchone()[0] == 5


def test_a_killed_run_takes_its_sweep_along(db: str, tmp_path: Path) -> None:
    """The run's worker SIGKILLed mid-sweep: no step process lives on to finish the sweep (and report success in a
    run marked failed); the sweep stays claimed and the next run redoes it exactly once."""
    demo(db, 100_000, users=2_000)
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "DAGSTER_HOME": str(home), "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": str(tmp_path / "lake")}
    dagster = Path(sys.executable).with_name("dagster")
    with open(tmp_path / "run.log", "w") as log:
        worker = subprocess.Popen([str(dagster), "job", "execute", "-m", "workdev_pipeline.definitions",
                                   "-j", "ingest_events"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    tree: list[psutil.Process] = []
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            wait_until(lambda: conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'"
                                            ).fetchone()[0], "a sweep to be running", timeout=300, interval=0.01,
                       gone=lambda: None if worker.poll() is None else f"the run's worker exited ({worker.returncode})",
                       context=lambda: (tmp_path / "run.log").read_text()[-3000:])
        tree = psutil.Process(worker.pid).children(recursive=True)
        worker.kill()
        worker.wait(60)
        _, alive = psutil.wait_procs(tree, timeout=120)  # an orphaned step would sweep on until it is done
        assert not alive, [p.cmdline() for p in alive]
        wait_until_lock_released(db)
        with psycopg.connect(db) as conn:
            assert conn.execute("SELECT status FROM ingestion_sweeps").fetchall() == [("running",)]
    finally:  # only what this test started, by pid
        for process in [worker, *tree]:
            if process.poll() is None if isinstance(process, subprocess.Popen) else process.is_running():
                process.kill()
    lake = LakeResource(uri=str(tmp_path / "lake"))
    redo = lake.ingestor(db).sweep()
    assert redo.status == "loaded" and redo.events_loaded + redo.events_failed == 100_000
    with psycopg.connect(db) as conn:
        held = lake_ids(lake.events())
        assert max(Counter(held).values()) == 1 and set(held) == loadable_ids(conn)

"""BigQuery and Redshift through the same Dagster asset tests as the local warehouse: the real google-cloud-bigquery
client against the bqemulator, the real redshift-connector against PostgreSQL behind the test stand-in
(``tests/redshift_standin.py``). End to end through the sensor, backfills twice, a late event, a run killed
between the engine's load and the bookkeeping, an engine down (retries, dead letter, replay), fan-out to every
engine at once."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import AssetSelection, DagsterInstance, Definitions, build_sensor_context, evaluate_automation_conditions
from psycopg.conninfo import conninfo_to_dict

from tests.bq_emulator import bigquery_emulator  # noqa: F401 (a fixture)
from tests.ingest_helpers import REPO, days_in_postgres, demo, loadable_ids, wait_until_lock_released
from tests.redshift_standin import redshift_standin  # noqa: F401 (a fixture)
from workdev_pipeline.aggregations.periods import DAILY, HOURLY
from workdev_pipeline.assets.aggregations import postgres_key, warehouse_key
from workdev_pipeline.assets.engine_aggregations import engine_aggregation_key
from workdev_pipeline.assets.engines import sweep_key, table_key
from workdev_pipeline.assets.governance import ERASURE_OP
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.definitions import build_definitions
from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.local import LocalWarehouseResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource
from workdev_pipeline.sql_files import query

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dataclass
class EngineSetup:
    """One engine under test: its resource, a copy of it pointing at a dead endpoint, and the environment that
    configures it for the CLI (``workdev-pipeline sweep --engine``)."""

    name: str
    resource: BigQueryWarehouseResource | RedshiftWarehouseResource
    down: BigQueryWarehouseResource | RedshiftWarehouseResource
    env: dict[str, str]


def _bigquery(request: pytest.FixtureRequest, home: Path) -> EngineSetup:
    emulator = request.getfixturevalue("bigquery_emulator")
    dataset = f"wd_{secrets.token_hex(4)}"
    common = {"project": emulator.project, "dataset": dataset, "mirror_dir": str(home / "engines" / "bigquery"),
              "backoff_seconds": 0.01}
    return EngineSetup("bigquery", BigQueryWarehouseResource(api_endpoint=emulator.endpoint, **common),
                       BigQueryWarehouseResource(api_endpoint="http://127.0.0.1:9", retries=1,
                                                 retry_deadline_seconds=1.0, **common),
                       {"BIGQUERY_PROJECT_ID": emulator.project, "BIGQUERY_DATASET_ID": dataset,
                        "BIGQUERY_API_ENDPOINT": emulator.endpoint})


def _redshift(request: pytest.FixtureRequest, home: Path, db: str) -> EngineSetup:
    standin = request.getfixturevalue("redshift_standin")
    params = conninfo_to_dict(db)
    user, database = str(params.get("user") or "postgres"), str(params["dbname"])
    common = {"host": standin.host, "database": database, "user": user, "ssl": False, "dialect": "postgres",
              "db_schema": "redshift_wh", "mirror_dir": str(home / "engines" / "redshift"), "backoff_seconds": 0.01}
    return EngineSetup("redshift", RedshiftWarehouseResource(port=standin.port, **common),
                       RedshiftWarehouseResource(port=9, retries=1, **common),
                       {"REDSHIFT_HOST": standin.host, "REDSHIFT_PORT": str(standin.port),
                        "REDSHIFT_DATABASE": database, "REDSHIFT_USER": user, "REDSHIFT_SSL": "false",
                        "REDSHIFT_SCHEMA": "redshift_wh", "REDSHIFT_DIALECT": "postgres"})


@pytest.fixture(params=["bigquery", "redshift"])
def engine(request: pytest.FixtureRequest, db: str, tmp_path: Path) -> Iterator[EngineSetup]:
    home = tmp_path / "home"
    yield _bigquery(request, home) if request.param == "bigquery" else _redshift(request, home, db)


def engine_defs(db: str, warehouse: LocalWarehouseResource, *engines: EngineSetup,
                down: bool = False) -> Definitions:
    return build_definitions({"postgres": PostgresResource(database_url=db), "warehouse": warehouse,
                              **{e.name: e.down if down else e.resource for e in engines}})


def run_job(defs: Definitions, name: str, instance: DagsterInstance, **kwargs):
    return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def held(resource, days) -> tuple[set[str], int, list]:
    """(event ids, rows, duplicates) the engine holds over ``days``."""
    ids: set[str] = set()
    rows, duplicates = 0, []
    for day in days:
        ids |= resource.event_ids(day)
        rows += sum(resource.day_counts(day).values())
        duplicates += resource.duplicate_event_ids(day)
    return ids, rows, duplicates


def assert_exactly_once(db: str, resource) -> None:
    with psycopg.connect(db) as conn:
        expected = loadable_ids(conn)
        days = [date.fromisoformat(d) for d in days_in_postgres(conn)]
    ids, rows, duplicates = held(resource, days)
    assert not duplicates
    assert rows == len(expected)
    assert ids == expected


def test_sensor_run_loads_every_event_into_the_engine_and_its_checks_pass(
        db: str, engine: EngineSetup, warehouse: LocalWarehouseResource, instance: DagsterInstance) -> None:
    defs = engine_defs(db, warehouse, engine)
    demo(db, 1_500, days=3)
    sensor = defs.get_sensor_def(f"ingest_sensor_{engine.name}")
    resources = {"postgres": PostgresResource(database_url=db), engine.name: engine.resource}
    result = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources))
    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags["workdev/engine"] == engine.name

    run = run_job(defs, f"ingest_events_{engine.name}", instance, tags=result.run_requests[0].tags)
    assert run.success
    assert_exactly_once(db, engine.resource)
    meta = next(m for m in run.asset_materializations_for_node(f"pipeline__{engine.name}_delivery")
                if m.asset_key == sweep_key(engine.name)).metadata
    assert meta["engine"].value == engine.name and meta["rows_loaded"].value > 0
    with psycopg.connect(db) as conn:
        days = set(days_in_postgres(conn))
        statuses = conn.execute("SELECT status, count(*) FROM warehouse_sync_status WHERE warehouse = %s "
                                "GROUP BY 1", (engine.name,)).fetchall()
    assert instance.get_materialized_partitions(table_key(engine.name)) == days
    assert dict(statuses) == {"succeeded": len(days)}  # one row per day the sweep loaded

    # the local warehouse gets its own sweep; then every check of the engine's day passes, parity included
    assert run_job(defs, "ingest_events", instance).success
    day = max(days)
    checks = run_job(defs, f"check_{engine.name}_days", instance, tags={"dagster/partition": day})
    verdicts = {e.check_name: e.passed for e in checks.get_asset_check_evaluations()}
    assert verdicts == {"reconciles_with_postgres": True, "no_duplicate_event_ids": True,
                        "parity_with_local": True}
    # nothing pending for this engine any more
    after = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert not after.run_requests


def test_backfill_twice_and_a_late_event(db: str, engine: EngineSetup, warehouse: LocalWarehouseResource,
                                         instance: DagsterInstance) -> None:
    defs = engine_defs(db, warehouse, engine)
    demo(db, 2_000, days=5)
    assert run_job(defs, f"ingest_events_{engine.name}", instance).success
    with psycopg.connect(db) as conn:
        days = sorted(date.fromisoformat(d) for d in days_in_postgres(conn))
    target, others = days[1:3], days[:1] + days[3:]
    before_others = {d: engine.resource.day_counts(d) for d in others}
    tags = {RANGE_START: target[0].isoformat(), RANGE_END: target[-1].isoformat()}
    job = defs.resolve_implicit_global_asset_job_def()
    for _ in range(2):
        run = job.execute_in_process(instance=instance, asset_selection=[table_key(engine.name)], tags=tags)
        assert run.success
        assert len(run.get_asset_materialization_events()) == len(target)
    assert {d: engine.resource.day_counts(d) for d in others} == before_others
    assert_exactly_once(db, engine.resource)

    # a late event: emitted now, dated in the first day -- the next sweep merges it into that day
    late = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC) + timedelta(hours=5)
    with AnalyticsClient(db) as client:
        event_id = client.track("user.login", {"method": "github"},
                                user_id="7d1f3b8e-0f6a-4a57-9b0e-6c0f2f3c9d11", timestamp=late)
    assert run_job(defs, f"ingest_events_{engine.name}", instance).success
    assert str(event_id) in engine.resource.event_ids(days[0])
    assert_exactly_once(db, engine.resource)


def _cli(args: list[str], engine: EngineSetup, home: Path, crash_at: str | None = None
         ) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "WORKDEV_HOME": str(home),
           **engine.env}
    if crash_at:
        env["WORKDEV_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "workdev_pipeline.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("operation", ["sweep", "rebuild"])
def test_killed_between_the_load_and_the_bookkeeping_then_rerun_is_exactly_once(
        db: str, engine: EngineSetup, tmp_path: Path, operation: str) -> None:
    demo(db, 1_200, days=2)
    home = tmp_path / "home"
    if operation == "rebuild":
        assert _cli(["sweep", "--engine", engine.name, "--database-url", db], engine, home).returncode == 0
    with psycopg.connect(db) as conn:
        day = max(days_in_postgres(conn))
    args = ["sweep"] if operation == "sweep" else ["rebuild", "--from", day]
    killed = _cli([*args, "--engine", engine.name, "--database-url", db], engine, home, crash_at="after_remote_load")
    assert killed.returncode == -9, killed.stderr[-2000:]
    wait_until_lock_released(db)
    if operation == "rebuild":  # the day was queued before the load: the next sweep finishes it
        with psycopg.connect(db) as conn:
            queued = conn.execute("SELECT event_date::text FROM warehouse_rebuild_queue WHERE consumer = %s",
                                  (engine.name,)).fetchall()
        assert queued == [(day,)]
    again = _cli(["sweep", "--engine", engine.name, "--database-url", db], engine, home)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_exactly_once(db, engine.resource)


def test_engine_down_retries_then_dead_letters_and_replay_delivers_exactly_once(
        db: str, engine: EngineSetup, warehouse: LocalWarehouseResource, instance: DagsterInstance) -> None:
    demo(db, 800, days=2)
    down = engine_defs(db, warehouse, engine, down=True)
    failed = run_job(down, f"ingest_events_{engine.name}", instance)
    assert not failed.success
    # the local warehouse is not blocked by the engine being down
    assert run_job(down, "ingest_events", instance).success
    with psycopg.connect(db) as conn:
        dead = dict(conn.execute("SELECT consumer, count(*) FROM event_failures WHERE resolved_at IS NULL "
                                 "GROUP BY 1").fetchall())
        status = conn.execute("SELECT status, error_message FROM warehouse_sync_status WHERE warehouse = %s",
                              (engine.name,)).fetchall()
        stored = conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0]
    assert dead == {engine.name: stored}  # every event of the sweep, in this engine's dead letter only
    assert status and status[0][0] == "failed" and "after 1 retries" in status[0][1]

    up = engine_defs(db, warehouse, engine)
    assert run_job(up, f"replay_failed_events_{engine.name}", instance).success
    assert_exactly_once(db, engine.resource)
    assert run_job(up, f"replay_failed_events_{engine.name}", instance).success  # twice: harmless
    assert_exactly_once(db, engine.resource)


def test_retention_and_erasure_reach_the_engine(db: str, engine: EngineSetup, warehouse: LocalWarehouseResource,
                                                instance: DagsterInstance) -> None:
    from tests.test_retention import History, dagster_now, retention_config

    history = History(dagster_now())  # eight years, every category, expired and kept events
    with psycopg.connect(db) as conn:
        history.insert(conn)
    defs = engine_defs(db, warehouse, engine)
    assert run_job(defs, "ingest_events", instance).success
    assert run_job(defs, f"ingest_events_{engine.name}", instance).success
    days = sorted({e["timestamp"].astimezone(UTC).date() for e in history.events})
    retention = defs.resolve_job_def("apply_retention").execute_in_process(
        instance=instance, run_config=retention_config(history.as_of, dry_run=False))
    assert retention.success
    ids, rows, duplicates = held(engine.resource, days)
    assert ids == history.kept_ids(loaded_only=True) and rows == len(ids) and not duplicates

    # erasure: the user's rows leave the engine's table too (anonymised rows written back without the user id)
    user_id = next(str(e["user_id"]) for e in history.events if e["user_id"] and str(e["event_id"]) in ids)
    assert engine.resource.user_row_count(user_id) > 0
    erased = defs.resolve_job_def("gdpr_erasure").execute_in_process(
        instance=instance, run_config={"ops": {ERASURE_OP: {"config": {"user_id": user_id}}}})
    assert erased.success
    assert engine.resource.user_row_count(user_id) == 0
    # the aggregation periods it recomputed reached the engine's event_aggregations as well
    meta = next(m.metadata for m in erased.asset_materializations_for_node(ERASURE_OP)
                if "aggregation_rows_written" in m.metadata)
    written = sum(meta["aggregation_rows_written"].value.values())
    assert meta["aggregation_rows_delivered"].value == {engine.name: written}
    for kind, periods in meta["aggregation_periods"].value.items():
        starts = [datetime.fromisoformat(p) for p in periods]
        span = (min(starts), max(starts) + timedelta(weeks=1))
        assert aggregation_rows(engine, kind, *span) == postgres_aggregation_rows(db, kind, *span) != []
    after, rows_after, duplicates = held(engine.resource, days)
    local = set().union(*(warehouse.event_ids(d) for d in days))
    assert after == local and rows_after == len(local) and not duplicates  # the same rows as the local warehouse


def aggregation_rows(engine: EngineSetup, kind: str, start: datetime, end: datetime) -> list[tuple]:
    return [(p.astimezone(UTC), t, c, int(n), int(u), int(s), a if a is None else float(a))
            for p, t, c, n, u, s, a in engine.resource.aggregation_rows(kind, start, end)]


def postgres_aggregation_rows(db: str, kind: str, start: datetime, end: datetime) -> list[tuple]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(query("aggregations/period_rows"), {
            "aggregation_type": kind, "range_start": start, "range_end": end}).fetchall()
    return [(p.astimezone(UTC), t, c, n, u, s, a if a is None else float(a)) for p, t, c, n, u, s, a in rows]


def test_aggregations_reach_the_engine_after_each_local_rebuild_and_match_postgres(
        db: str, engine: EngineSetup, warehouse: LocalWarehouseResource, instance: DagsterInstance) -> None:
    defs = engine_defs(db, warehouse, engine)
    demo(db, 1_500, days=3)
    assert run_job(defs, "ingest_events", instance).success
    with psycopg.connect(db) as conn:
        day = date.fromisoformat(min(days_in_postgres(conn)))  # a closed day
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    hours = [f"{day}-{h:02d}:00" for h in range(24)]
    job = defs.resolve_implicit_global_asset_job_def()
    local = [postgres_key(HOURLY), warehouse_key(HOURLY), postgres_key(DAILY), warehouse_key(DAILY)]
    hourly, daily = engine_aggregation_key(engine.name, HOURLY), engine_aggregation_key(engine.name, DAILY)
    engine_assets = AssetSelection.assets(hourly, daily)
    first = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=engine_assets)
    assert first.total_requested == 0  # the sensor's first tick: nothing local yet
    assert job.execute_in_process(instance=instance, asset_selection=local[:2],
                                  tags={RANGE_START: hours[0], RANGE_END: hours[-1]}).success
    assert job.execute_in_process(instance=instance, asset_selection=local[2:], partition_key=str(day)).success

    # the automation asks for exactly the engine's partitions whose local aggregations exist: the day's 24 hours
    # and the day -- not the other engine's, nor any period the local aggregations have not reached
    evaluation = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=engine_assets,
                                                cursor=first.cursor)
    assert evaluation.get_requested_partitions(hourly) == set(hours)
    assert evaluation.get_requested_partitions(daily) == {str(day)}

    run = job.execute_in_process(instance=instance, asset_selection=[hourly],
                                 tags={RANGE_START: hours[0], RANGE_END: hours[-1]})
    assert run.success
    assert {e.check_name: e.passed for e in run.get_asset_check_evaluations()} == {"matches_postgres": True}
    assert job.execute_in_process(instance=instance, asset_selection=[daily], partition_key=str(day)).success
    for kind, end in (("hourly", start + timedelta(days=1)), ("daily", start + timedelta(days=1))):
        assert aggregation_rows(engine, kind, start, end) == postgres_aggregation_rows(db, kind, start, end) != []

    # the next tick sees the deliveries: nothing is due any more
    settled = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=engine_assets,
                                             cursor=evaluation.cursor)
    assert settled.total_requested == 0

    # a late event in hour 5: the local hour is rebuilt, and the engine's hour is due again -- only that hour
    with AnalyticsClient(db) as client:
        client.track("payment.completed", {"amount": 1234.5, "currency": "USD"},
                     user_id="7d1f3b8e-0f6a-4a57-9b0e-6c0f2f3c9d11", timestamp=start + timedelta(hours=5, minutes=7))
    assert run_job(defs, "ingest_events", instance).success
    assert job.execute_in_process(instance=instance, asset_selection=local[:2], partition_key=hours[5]).success
    again = evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor,
                                           asset_selection=engine_assets)
    assert again.get_requested_partitions(hourly) == {hours[5]} and not again.get_requested_partitions(daily)
    stale = aggregation_rows(engine, "hourly", start, start + timedelta(days=1))
    assert stale != postgres_aggregation_rows(db, "hourly", start, start + timedelta(days=1))
    assert job.execute_in_process(instance=instance, asset_selection=[hourly], partition_key=hours[5]).success
    assert aggregation_rows(engine, "hourly", start, start + timedelta(days=1)) == \
        postgres_aggregation_rows(db, "hourly", start, start + timedelta(days=1))


def test_a_failed_aggregation_delivery_is_tried_again_at_the_next_settle_tick(
        db: str, engine: EngineSetup, warehouse: LocalWarehouseResource, instance: DagsterInstance) -> None:
    defs, down = engine_defs(db, warehouse, engine), engine_defs(db, warehouse, engine, down=True)
    demo(db, 600, days=2)
    assert run_job(defs, "ingest_events", instance).success
    with psycopg.connect(db) as conn:
        day = date.fromisoformat(min(days_in_postgres(conn)))
        busiest = conn.execute("SELECT extract(hour FROM \"timestamp\" AT TIME ZONE 'UTC')::int FROM "
                               "platform_event_store WHERE (\"timestamp\" AT TIME ZONE 'UTC')::date = %s "
                               "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1", (day,)).fetchone()[0]
    hour, key = f"{day}-{busiest:02d}:00", engine_aggregation_key(engine.name, HOURLY)
    job, selection = defs.resolve_implicit_global_asset_job_def(), AssetSelection.assets(key)
    now = datetime.now(UTC)
    settle = (now - timedelta(minutes=5)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1, minutes=5)
    if settle - now < timedelta(seconds=20):  # keep the next :05 tick clear of the first evaluations
        time.sleep((settle - now).total_seconds() + 1)
        now, settle = datetime.now(UTC), settle + timedelta(hours=1)

    first = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection, evaluation_time=now)
    assert job.execute_in_process(instance=instance, asset_selection=[postgres_key(HOURLY), warehouse_key(HOURLY)],
                                  partition_key=hour).success
    due = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor,
                                         evaluation_time=now + timedelta(seconds=2))
    assert due.get_requested_partitions(key) == {hour}
    # the engine is down: the delivery fails after its retries, and is not asked for again at every tick
    failed = down.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[key], partition_key=hour, raise_on_error=False)
    assert not failed.success
    assert aggregation_rows_or_none(engine, day) is None
    quiet = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection, cursor=due.cursor,
                                           evaluation_time=now + timedelta(seconds=4))
    assert quiet.total_requested == 0
    # at the next :05 it is asked for again, and delivered once the engine is back
    retry = evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=selection,
                                           cursor=quiet.cursor, evaluation_time=settle + timedelta(seconds=1))
    assert retry.get_requested_partitions(key) == {hour}
    assert job.execute_in_process(instance=instance, asset_selection=[key], partition_key=hour).success
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=busiest)
    assert aggregation_rows(engine, "hourly", start, start + timedelta(hours=1)) == \
        postgres_aggregation_rows(db, "hourly", start, start + timedelta(hours=1)) != []


def aggregation_rows_or_none(engine: EngineSetup, day: date) -> list[tuple] | None:
    """The engine's hourly rows of ``day``, or None when its aggregations table does not exist yet."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    try:
        return aggregation_rows(engine, "hourly", start, start + timedelta(days=1)) or None
    except Exception:  # no table: nothing was ever delivered
        return None

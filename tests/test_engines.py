"""BigQuery and Redshift fed from the lake and governed in place: the real google-cloud-bigquery client against the
bqemulator, the real redshift-connector against PostgreSQL behind the test stand-in (``tests/redshift_standin.py``),
the real Delta lake, real Dagster runs. The sweep into the lake is the real ingestor's; everything the engines hold
comes from the lake. End to end through the sensor; appends merged, a day rebuilt in the lake replaced; backfills
twice; a run killed between the engine's load and its bookkeeping; an engine down while the lake is rebuilt and
vacuumed; a log cleaned up past the engine's version; retention and erasure in place on a new host."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, Definitions, build_sensor_context
from psycopg.conninfo import conninfo_to_dict

from tests.bq_emulator import bigquery_emulator  # noqa: F401 (a fixture)
from tests.ingest_helpers import (
    REPO,
    days_in_postgres,
    demo,
    loadable_ids,
    make_first_day_largest,
    wait_until_lock_released,
)
from tests.redshift_standin import redshift_standin  # noqa: F401 (a fixture)
from workdev_pipeline.aggregations.periods import DAILY
from workdev_pipeline.assets.engine_aggregations import engine_aggregation_key
from workdev_pipeline.assets.engines import (
    delivery_job_name,
    delivery_key,
    delivery_sensor_name,
    table_key,
)
from workdev_pipeline.assets.keys import lake_aggregations_key, postgres_aggregations_key
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.definitions import build_definitions
from workdev_pipeline.governance.erasure import erase_users, verify_erasures
from workdev_pipeline.governance.retention import apply_retention, verify_retention
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.lake.delivery import delivered_version
from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@dataclass
class EngineSetup:
    """One engine under test: its resource, a copy of it pointing at a dead endpoint, and the environment that
    configures it for another process (``engine_settings.py``)."""

    name: str
    resource: BigQueryWarehouseResource | RedshiftWarehouseResource
    down: BigQueryWarehouseResource | RedshiftWarehouseResource
    env: dict[str, str]


def _bigquery(request: pytest.FixtureRequest) -> EngineSetup:
    emulator = request.getfixturevalue("bigquery_emulator")
    dataset = f"wd_{secrets.token_hex(4)}"
    common = {"project": emulator.project, "dataset": dataset, "backoff_seconds": 0.01}
    return EngineSetup("bigquery", BigQueryWarehouseResource(api_endpoint=emulator.endpoint, **common),
                       BigQueryWarehouseResource(api_endpoint="http://127.0.0.1:9", retries=1,
                                                 retry_deadline_seconds=1.0, **common),
                       {"BIGQUERY_ENABLED": "true", "BIGQUERY_PROJECT_ID": emulator.project,
                        "BIGQUERY_DATASET_ID": dataset, "BIGQUERY_API_ENDPOINT": emulator.endpoint})


def _redshift(request: pytest.FixtureRequest, db: str) -> EngineSetup:
    standin = request.getfixturevalue("redshift_standin")
    params = conninfo_to_dict(db)
    user, database = str(params.get("user") or "postgres"), str(params["dbname"])
    common = {"host": standin.host, "database": database, "user": user, "ssl": False, "dialect": "postgres",
              "db_schema": "redshift_wh", "backoff_seconds": 0.01}
    return EngineSetup("redshift", RedshiftWarehouseResource(port=standin.port, **common),
                       RedshiftWarehouseResource(port=9, retries=1, **common),
                       {"REDSHIFT_ENABLED": "true", "REDSHIFT_HOST": standin.host, "REDSHIFT_PORT": str(standin.port),
                        "REDSHIFT_DATABASE": database, "REDSHIFT_USER": user, "REDSHIFT_SSL": "false",
                        "REDSHIFT_SCHEMA": "redshift_wh", "REDSHIFT_DIALECT": "postgres"})


@pytest.fixture(params=["bigquery", "redshift"])
def engine(request: pytest.FixtureRequest, db: str) -> Iterator[EngineSetup]:
    yield _bigquery(request) if request.param == "bigquery" else _redshift(request, db)


def engine_defs(db: str, lake: LakeResource, *engines: EngineSetup, down: bool = False) -> Definitions:
    return build_definitions({"postgres": PostgresResource(database_url=db), "lake": lake,
                              **{e.name: e.down if down else e.resource for e in engines}})


def run_job(defs: Definitions, name: str, instance: DagsterInstance, **kwargs):
    return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def sweep(db: str, lake: EventLake) -> None:
    outcome = Ingestor(db, lake, consumer="lake", backoff_seconds=0.01).sweep()
    assert outcome.status in ("loaded", "idle"), outcome.error


def held(resource, days) -> tuple[set[str], int, list]:
    """(event ids, rows, duplicates) the engine holds over ``days``."""
    ids: set[str] = set()
    rows, duplicates = 0, []
    for day in days:
        ids |= resource.event_ids(day)
        rows += sum(resource.day_counts(day).values())
        duplicates += resource.duplicate_event_ids(day)
    return ids, rows, duplicates


def lake_rows(lake: EventLake) -> dict[str, tuple]:
    """event_id -> (event_type, user_id, event_data) of the lake's latest snapshot."""
    return {r[0]: r[1:] for r in lake.snapshot().query(
        "SELECT event_id, event_type, user_id, event_data FROM platform_events")}


def assert_engine_is_the_lake(resource, lake: EventLake) -> None:
    """The engine holds exactly the lake's events, once each, over every day either has."""
    snapshot = lake.snapshot()
    days = set(snapshot.days()) | resource.days()
    ids, rows, duplicates = held(resource, sorted(days))
    expected = {r[0] for r in snapshot.query("SELECT event_id FROM platform_events")}
    assert not duplicates
    assert ids == expected and rows == len(expected)


def assert_exactly_once(db: str, resource) -> None:
    """The engine holds every loadable event of PostgreSQL once."""
    with psycopg.connect(db) as conn:
        expected = loadable_ids(conn)
        days = [date.fromisoformat(d) for d in days_in_postgres(conn)]
    ids, rows, duplicates = held(resource, days)
    assert not duplicates
    assert rows == len(expected)
    assert ids == expected


def delivered(db: str, engine: str) -> int | None:
    with psycopg.connect(db) as conn:
        return delivered_version(conn, engine)[0]


def test_sensor_delivers_the_lake_into_the_engine_and_its_checks_pass(
        db: str, engine: EngineSetup, lake: LakeResource, instance: DagsterInstance) -> None:
    defs = engine_defs(db, lake, engine)
    demo(db, 1_500, days=3)
    resources = {"postgres": PostgresResource(database_url=db), "lake": lake, engine.name: engine.resource}
    sensor = defs.get_sensor_def(delivery_sensor_name(engine.name))
    assert not sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources)).run_requests
    sweep(db, lake.events())  # the lake's sweep (its own job); the engine's sensor sees the new version

    result = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources))
    assert len(result.run_requests) == 1 and result.run_requests[0].tags["workdev/engine"] == engine.name
    run = run_job(defs, delivery_job_name(engine.name), instance, tags=result.run_requests[0].tags)
    assert run.success
    assert_exactly_once(db, engine.resource)
    assert delivered(db, engine.name) == lake.events().version()
    meta = next(m for m in run.asset_materializations_for_node(f"pipeline__{engine.name}_delivery")
                if m.asset_key == delivery_key(engine.name)).metadata
    assert meta["engine"].value == engine.name and meta["mode"].value == "full" and meta["rows_loaded"].value > 0
    with psycopg.connect(db) as conn:
        per_day = days_in_postgres(conn)
        days = set(per_day)
    assert instance.get_materialized_partitions(table_key(engine.name)) == days
    day_records = {m.partition: m.metadata for m in run.asset_materializations_for_node(
        f"pipeline__{engine.name}_delivery") if m.asset_key == table_key(engine.name)}
    assert {d: m["rows_loaded"].value for d, m in day_records.items()} == per_day  # each day its own rows

    day = max(days)
    checks = run_job(defs, f"check_{engine.name}_days", instance, tags={"dagster/partition": day})
    evaluations = {e.check_name: e for e in checks.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {
        "reconciles_with_postgres": True, "no_duplicate_event_ids": True, "parity_with_lake": True}
    assert evaluations["parity_with_lake"].metadata["compared"].value is True
    assert {e.partition for e in evaluations.values()} == {day}  # each recorded against the day checked
    after = sensor.evaluate_tick(build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    assert not after.run_requests  # nothing new in the lake

    # the checks look at the engine: a row the lake does not have, and a row twice, are seen
    with engine.resource.table() as table:
        first = table.event_ids(date.fromisoformat(day))
        path = lake.snapshot().file_uri(lake.snapshot().day_files(date.fromisoformat(day))[0])
        table.merge_files(date.fromisoformat(day), [Path(path)], "test-remerge")  # idempotent: nothing changes
        assert table.event_ids(date.fromisoformat(day)) == first
        _insert_stray_row(engine, table, date.fromisoformat(day))
    checks = run_job(defs, f"check_{engine.name}_days", instance, tags={"dagster/partition": day})
    assert {e.check_name: e.passed for e in checks.get_asset_check_evaluations()} == {
        "reconciles_with_postgres": False, "no_duplicate_event_ids": True, "parity_with_lake": False}


def _insert_stray_row(engine: EngineSetup, table, day: date, event_id: str | None = None) -> str:
    """A row in the engine's day that the lake does not have (drift, or a bug)."""
    event_id = event_id or str(uuid.uuid4())
    table.ensure_table()
    stamp = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)
    if engine.name == "bigquery":
        table._query(f"INSERT INTO `{table.table_id}` (event_id, event_type, event_category, `timestamp`, "
                     f"ingested_at) VALUES ('{event_id}', 'user.login', 'user_activity', TIMESTAMP "
                     f"'{stamp.isoformat()}', CURRENT_TIMESTAMP())")
    else:
        with table._transaction() as cursor:
            cursor.execute('INSERT INTO "redshift_wh"."platform_events" (event_id, event_type, event_category, '
                           '"timestamp", ingested_at) VALUES (%s, %s, %s, %s, %s)',
                           (event_id, "user.login", "user_activity", stamp, stamp))
    return event_id


def test_appends_are_merged_and_a_day_rebuilt_in_the_lake_is_replaced(
        db: str, engine: EngineSetup, lake: LakeResource) -> None:
    events = lake.events()
    demo(db, 1_200, days=3)
    sweep(db, events)
    first = engine.resource.deliver(db, events)
    assert first.status == "delivered" and first.mode == "full"
    with psycopg.connect(db) as conn:
        days = sorted(date.fromisoformat(d) for d in days_in_postgres(conn))

    # a late event, dated on the first day: the next delivery merges the sweep's one new file into that day only
    late = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC) + timedelta(hours=5)
    with AnalyticsClient(db) as client:
        event_id = str(client.track("user.login", {"method": "github"},
                                    user_id="7d1f3b8e-0f6a-4a57-9b0e-6c0f2f3c9d11", timestamp=late))
    sweep(db, events)
    merged = engine.resource.deliver(db, events)
    assert (merged.mode, merged.days_merged, merged.days_replaced, merged.files) == ("incremental", [days[0]], [], 1)
    assert merged.days == {days[0]: 1}
    assert event_id in engine.resource.event_ids(days[0])
    assert_exactly_once(db, engine.resource)

    # a stray row in the engine's second day, then that day rebuilt in the lake (a predicate overwrite): the
    # delivery replaces the whole day (the stray row goes), and loads nothing else
    with engine.resource.table() as table:
        stray = _insert_stray_row(engine, table, days[1])
    assert stray in engine.resource.event_ids(days[1])
    assert Ingestor(db, events, consumer="lake").rebuild([days[1]]).status == "loaded"
    replaced = engine.resource.deliver(db, events)
    assert (replaced.days_replaced, replaced.days_merged) == ([days[1]], [])
    assert stray not in engine.resource.event_ids(days[1])
    assert_exactly_once(db, engine.resource)

    # a compaction (same rows, new files) of files the engine holds: nothing to load
    events.table().optimize.compact()
    compacted = engine.resource.deliver(db, events)
    assert compacted.status == "delivered" and compacted.days == {}
    assert delivered(db, engine.name) == events.version()
    idle = engine.resource.deliver(db, events)
    assert idle.status == "idle" and idle.days == {}
    assert_engine_is_the_lake(engine.resource, events)


def test_backfill_twice_replaces_the_days_from_the_lake(db: str, engine: EngineSetup, lake: LakeResource,
                                                        instance: DagsterInstance) -> None:
    defs = engine_defs(db, lake, engine)
    demo(db, 1_500, days=5)
    with psycopg.connect(db) as conn:
        days = sorted(date.fromisoformat(d) for d in days_in_postgres(conn))
    target, others = days[1:3], days[:1] + days[3:]
    make_first_day_largest(db, [d.isoformat() for d in target])  # days of different sizes, whatever the hour
    sweep(db, lake.events())
    # the engine never delivered: a backfill fills just its days from the lake
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {RANGE_START: target[0].isoformat(), RANGE_END: target[-1].isoformat()}
    with engine.resource.table() as table:
        stray = _insert_stray_row(engine, table, target[0])
    for _ in range(2):
        run = job.execute_in_process(instance=instance, asset_selection=[table_key(engine.name)], tags=tags)
        assert run.success
        assert len(run.get_asset_materialization_events()) == len(target)
        assert engine.resource.days() == set(target)
    snapshot = lake.snapshot()
    # each day's materialization: that day's own rows (as the engine counts them), the lake files and bytes they
    # came from, its seconds; the run's totals in ``run``
    meta = {e.partition: e.materialization.metadata for e in run.get_asset_materialization_events()}
    files = snapshot.files().to_pylist()
    own = {d.isoformat(): (sum(engine.resource.day_counts(d).values()),
                           sum(1 for f in files if f["event_date"] == d),
                           sum(f["size_bytes"] for f in files if f["event_date"] == d)) for d in target}
    assert len({rows for rows, _, _ in own.values()}) == len(target)  # days of different sizes
    assert {d: (m["rows_loaded"].value, m["files"].value, m["bytes"].value) for d, m in meta.items()} == own
    assert all(m["seconds"].value > 0 and m["events_per_second"].value > 0 for m in meta.values())
    assert {m["run"].value["rows_loaded"] for m in meta.values()} == {sum(rows for rows, _, _ in own.values())}
    for day in target:
        assert engine.resource.event_ids(day) == {r[0] for r in snapshot.query("SELECT event_id FROM platform_events",
                                                                               days=[day])}
    assert stray not in engine.resource.event_ids(target[0])
    assert delivered(db, engine.name) is None  # a backfill is not a delivery: the next one loads everything
    assert run_job(defs, delivery_job_name(engine.name), instance).success
    assert_exactly_once(db, engine.resource)
    assert engine.resource.days() == set(days)
    assert others


def test_aggregations_delivered_over_a_range_report_each_periods_own_rows(
        db: str, engine: EngineSetup, lake: LakeResource, instance: DagsterInstance) -> None:
    """The lake's daily aggregations of two days, then the engine's, each in one run: each day's materialization in
    the engine carries the rows the engine holds for that day (PostgreSQL's count of the period's rows), the
    run's totals in ``run``."""
    defs = engine_defs(db, lake, engine)
    demo(db, 1_500, days=4)
    sweep(db, lake.events())
    with psycopg.connect(db) as conn:
        days = sorted(date.fromisoformat(d) for d in days_in_postgres(conn))[1:3]
    job = defs.resolve_implicit_global_asset_job_def()
    tags = {RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()}
    local = [postgres_aggregations_key("daily"), lake_aggregations_key("daily")]
    assert job.execute_in_process(instance=instance, asset_selection=local, tags=tags).success
    run = job.execute_in_process(instance=instance, asset_selection=[engine_aggregation_key(engine.name, DAILY)],
                                 tags=tags)
    assert run.success
    meta = {e.partition: e.materialization.metadata for e in run.get_asset_materialization_events()}
    start = datetime.combine(days[0], datetime.min.time(), tzinfo=UTC)
    in_engine = engine.resource.aggregation_rows("daily", start, start + timedelta(days=len(days)))
    own = {d.isoformat(): sum(1 for r in in_engine if r[0].astimezone(UTC).date() == d) for d in days}
    with psycopg.connect(db) as conn:
        assert own == {d.isoformat(): n for d, n in conn.execute(
            "SELECT (period_start AT TIME ZONE 'UTC')::date, count(*) FROM event_aggregations WHERE "
            "aggregation_type = 'daily' AND period_start >= %s AND period_start < %s GROUP BY 1",
            (start, start + timedelta(days=2)))}
    assert {d: m["rows_loaded"].value for d, m in meta.items()} == own
    assert {d: m["dagster/partition_row_count"].value for d, m in meta.items()} == own
    assert {m["run"].value["rows_loaded"] for m in meta.values()} == {sum(own.values())}


def _deliver_in_subprocess(db: str, engine: EngineSetup, lake_root: Path, home: Path,
                           crash_at: str | None = None) -> subprocess.CompletedProcess:
    """One delivery in another process configured by the environment (WORKDEV_LAKE_URI, the engine's settings),
    optionally SIGKILLed at a crash point."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "WORKDEV_HOME": str(home),
           "WORKDEV_LAKE_URI": str(lake_root), **engine.env}
    if crash_at:
        env["WORKDEV_CRASH_AT"] = crash_at
    code = ("import sys\n"
            "from workdev_pipeline.engine_settings import remote_engine_resources\n"
            "from workdev_pipeline.lake import EventLake, LakeLocation\n"
            "resource = remote_engine_resources()[sys.argv[2]].process_config_and_initialize()\n"
            "o = resource.deliver(sys.argv[1], EventLake(LakeLocation.from_env()))\n"
            "print(o.status, o.mode, o.rows)\n")
    return subprocess.run([sys.executable, "-c", code, db, engine.name], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO)


@pytest.mark.slow
def test_killed_between_the_engine_load_and_its_bookkeeping_then_rerun_is_exactly_once(
        db: str, engine: EngineSetup, lake: LakeResource, tmp_path: Path) -> None:
    events = lake.events()
    lake_root = Path(lake.location().root)
    demo(db, 1_200, days=2)
    sweep(db, events)
    home = tmp_path / "home"
    killed = _deliver_in_subprocess(db, engine, lake_root, home, crash_at="after_remote_load")
    assert killed.returncode == -9, killed.stderr[-3000:]
    wait_until_lock_released(db)
    assert delivered(db, engine.name) is None  # loaded, not recorded
    assert engine.resource.days()  # the engine did receive the rows

    # a new sweep meanwhile; the redo plans from the unrecorded version and loads everything once
    demo(db, 300, days=2, seed=8)
    sweep(db, events)
    again = _deliver_in_subprocess(db, engine, lake_root, home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.split()[:2] == ["delivered", "full"]
    assert_exactly_once(db, engine.resource)

    # killed during an incremental delivery: the same
    demo(db, 300, days=2, seed=9)
    sweep(db, events)
    before = delivered(db, engine.name)
    killed = _deliver_in_subprocess(db, engine, lake_root, home, crash_at="after_remote_load")
    assert killed.returncode == -9, killed.stderr[-3000:]
    wait_until_lock_released(db)
    assert delivered(db, engine.name) == before
    again = _deliver_in_subprocess(db, engine, lake_root, home)
    assert again.returncode == 0 and again.stdout.split()[:2] == ["delivered", "incremental"], again.stderr[-3000:]
    assert delivered(db, engine.name) == events.version()
    assert_exactly_once(db, engine.resource)
    assert not home.exists() or not any(home.rglob("*.parquet"))  # nothing of the engine on this host's disk


def test_engine_down_while_the_lake_is_rebuilt_and_vacuumed_then_up_gets_everything_once(
        db: str, engine: EngineSetup, lake: LakeResource, instance: DagsterInstance) -> None:
    events = lake.events()
    demo(db, 1_000, days=3)
    sweep(db, events)
    assert engine.resource.deliver(db, events).status == "delivered"
    with psycopg.connect(db) as conn:
        days = sorted(date.fromisoformat(d) for d in days_in_postgres(conn))

    # the engine goes down; meanwhile the lake takes a sweep, a rebuild of a day, and a vacuum that deletes the
    # files the rebuild replaced -- and the engine's delivery fails (after its retries), recording nothing
    before = delivered(db, engine.name)
    demo(db, 400, days=3, seed=8)
    sweep(db, events)
    assert Ingestor(db, events, consumer="lake").rebuild([days[0]]).status == "loaded"
    assert events.vacuum(0)  # the rebuilt day's old files are gone from storage
    down = engine_defs(db, lake, engine, down=True)
    failed = run_job(down, delivery_job_name(engine.name), instance)
    assert not failed.success
    assert delivered(db, engine.name) == before

    # back up: the delivery loads what the lake holds now -- the new files merged, the rebuilt day replaced
    up = engine_defs(db, lake, engine)
    run = run_job(up, delivery_job_name(engine.name), instance)
    assert run.success
    meta = next(m for m in run.asset_materializations_for_node(f"pipeline__{engine.name}_delivery")
                if m.asset_key == delivery_key(engine.name)).metadata
    assert meta["mode"].value == "incremental" and meta["days_replaced"].value == 1
    assert_exactly_once(db, engine.resource)
    assert delivered(db, engine.name) == events.version()


def test_a_log_cleaned_up_past_the_delivered_version_gives_a_full_delivery(
        db: str, engine: EngineSetup, lake: LakeResource) -> None:
    events = lake.events()
    demo(db, 800, days=3)
    sweep(db, events)
    assert engine.resource.deliver(db, events).mode == "full"
    with psycopg.connect(db) as conn:
        days = sorted(date.fromisoformat(d) for d in days_in_postgres(conn))
    with engine.resource.table() as table:  # a day the lake does not have (the full delivery empties it)
        _insert_stray_row(engine, table, days[0] - timedelta(days=30))
    demo(db, 300, days=3, seed=8)
    sweep(db, events)
    events.delete(f"event_date = '{days[-1].isoformat()}'")
    table = events.table()
    table.create_checkpoint()
    log = Path(lake.location().root) / "platform_events" / "_delta_log"
    for version in range(delivered(db, engine.name) + 1, table.version()):  # what a log cleanup removes
        (log / f"{version:020d}.json").unlink()
    outcome = engine.resource.deliver(db, events)
    assert outcome.mode == "full" and "log" in " ".join(outcome.notes)
    assert days[0] - timedelta(days=30) in outcome.days_replaced
    assert_engine_is_the_lake(engine.resource, events)
    assert engine.resource.deliver(db, events).status == "idle"


@pytest.mark.slow
def test_new_host_governance_leaves_every_other_users_rows_in_the_lake_and_both_engines(
        request: pytest.FixtureRequest, db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh, empty WORKDEV_HOME; the lake where WORKDEV_LAKE_URI points (as a shared store would be): an erasure
    and a retention run through every store remove exactly what they must, and the checks query each engine."""
    from tests.test_retention import History, dagster_now

    shared = tmp_path / "shared-store" / "lake"
    history = History(dagster_now())  # eight years, every category, expired and kept events
    with psycopg.connect(db) as conn:
        history.insert(conn)
    events = EventLake(LakeLocation.from_env(str(shared)))
    sweep(db, events)
    engines = [_bigquery(request), _redshift(request, db)]
    for setup in engines:  # delivered from the lake by another host; nothing on this one
        assert setup.resource.deliver(db, events).mode == "full"
        assert_engine_is_the_lake(setup.resource, events)

    home = tmp_path / "new-host"
    home.mkdir()
    monkeypatch.setenv("WORKDEV_HOME", str(home))
    monkeypatch.setenv("WORKDEV_LAKE_URI", str(shared))
    monkeypatch.chdir(home)
    stores = EnabledWarehouses(lake=LakeResource(), bigquery=engines[0].resource, redshift=engines[1].resource)
    governed = stores.governed(db)
    assert [w.consumer for w in governed] == ["lake", "bigquery", "redshift"]

    loaded = lake_rows(events)
    user_id = next(str(e["user_id"]) for e in history.events
                   if e["user_id"] and str(e["event_id"]) in loaded and not _expired(e, history.as_of))
    user_events = {str(e["event_id"]) for e in history.events if str(e["user_id"]) == user_id} & set(loaded)
    with AnalyticsClient(db, user_id=uuid.uuid4()) as friend:  # another user's events naming the user
        stamp = datetime.now(UTC) - timedelta(hours=1)
        references = {str(friend.track("profile.viewed", {"profile_user_id": user_id}, timestamp=stamp)),
                      str(friend.track("message.sent", {"conversation_id": str(uuid.uuid4()),
                                                        "recipient_user_id": user_id, "recipient_email":
                                                        f"r.{user_id[:8]}@example.com"}, timestamp=stamp))}
    sweep(db, events)
    for setup in engines:
        setup.resource.deliver(db, events)
    before = lake_rows(events)
    assert all(s.resource.user_row_count(user_id) == len(user_events) for s in engines)
    erased = erase_users(db, [user_id], governed, requested_by="test")
    assert erased.results[0].status == "erased" and erased.results[0].reference_rows == 2
    touched = len(user_events) + len(references)
    assert erased.results[0].warehouse_rows == {"lake": touched, "bigquery": touched, "redshift": touched}
    report = apply_retention(db, stores.governed(db), as_of=history.as_of)
    assert {w.consumer for w in report.warehouses} == {"lake", "bigquery", "redshift"}
    lake_report = report.warehouse("lake")
    for setup in engines:
        assert report.warehouse(setup.name).events == lake_report.events != {}

    after = lake_rows(events)
    kept = history.kept_ids(loaded_only=True)
    assert set(after) == kept | references  # expired gone, every kept event still there
    for event_id, (event_type, row_user, data) in after.items():
        if event_id in user_events:
            assert row_user is None
        elif event_id in references:  # the friend's, naming a pseudonym now, the recipient's email gone
            assert row_user == before[event_id][1] and user_id not in data and "@example.com" not in data
        else:
            assert (event_type, row_user, data) == before[event_id]  # every other user's row as it was
    for setup in engines:
        assert setup.resource.user_row_count(user_id) == 0
        assert_engine_is_the_lake(setup.resource, events)
    assert not any(home.rglob("*.parquet"))

    # the checks query each store: all pass; a leftover of the erased user in one engine is found there
    assert verify_retention(db, stores.governed(db)).passed
    verification = verify_erasures(db, stores.governed(db))
    assert verification.passed, verification.places()
    with engines[1].resource.table() as table:
        day = min(events.snapshot().days())
        stamp = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=2)
        with table._transaction() as cursor:
            cursor.execute('INSERT INTO "redshift_wh"."platform_events" (event_id, event_type, event_category, '
                           'user_id, "timestamp", ingested_at) VALUES (%s, %s, %s, %s, %s, %s)',
                           (str(uuid.uuid4()), "user.login", "user_activity", user_id, stamp, stamp))
    verification = verify_erasures(db, stores.governed(db))
    assert not verification.passed
    assert verification.places() == {"#1": ["warehouse:redshift: user_id (1 rows)"]}

    # the next deliveries replace the days the lake's governance commits touched: the same rows (idempotent)
    with engines[1].resource.table() as table, table._transaction() as cursor:
        cursor.execute('DELETE FROM "redshift_wh"."platform_events" WHERE user_id = %s', (user_id,))
    for setup in engines:
        outcome = setup.resource.deliver(db, events)
        assert outcome.status == "delivered" and outcome.days_replaced and not outcome.days_merged
        assert_engine_is_the_lake(setup.resource, events)
        assert setup.resource.user_row_count(user_id) == 0


def _expired(event: dict, as_of: datetime) -> bool:
    from tests.test_retention import expired

    return expired(event, as_of)


def test_the_pipeline_role_can_record_deliveries(db: str, lake: LakeResource, engine: EngineSetup,
                                                 login_role) -> None:
    demo(db, 200, days=1)
    sweep(db, lake.events())
    url = login_role("workdev_pipeline")
    outcome = engine.resource.deliver(url, lake.events())
    assert outcome.status == "delivered"
    assert delivered(db, engine.name) == lake.events().version()


def test_no_mirror_is_left(tmp_path: Path) -> None:
    """The engines keep nothing on local disk: no mirror setting, no engines directory."""
    for resource in (BigQueryWarehouseResource, RedshiftWarehouseResource):
        assert not {"mirror_dir", "geoip_database"} & set(resource.model_fields)

"""`processed` in the seed's monitoring view waits for every enabled warehouse engine: an event the sweep put into the
lake reads `pending` until BigQuery (the real client on the bqemulator) or Redshift (redshift-connector on the
stand-in) has delivered the lake version holding it, `processed` after; an engine no longer enabled stops gating it;
with no engine enabled nothing changes. The backlog check and `workdev-pipeline status` name the engine behind."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetSelection,
    DagsterInstance,
    materialize,
)
from psycopg.conninfo import make_conninfo

from tests.bq_emulator import bigquery_emulator  # noqa: F401 (a fixture)
from tests.ingest_helpers import (
    accept_any_budget,
    demo,
    emit_bad_budgets,
    loadable_ids,
    sweep_in_subprocess,
    wait_until_lock_released,
)
from tests.redshift_standin import redshift_standin  # noqa: F401 (a fixture)
from tests.seed_queries import EVENT_PROCESSING_METRICS
from tests.test_engines import EngineSetup, _bigquery, _redshift, engine_defs, run_job
from workdev_pipeline.assets.checks import pending_backlog_fresh
from workdev_pipeline.assets.engines import delivery_job_name
from workdev_pipeline.assets.ingestion import INCOMING_EVENTS, incoming_events
from workdev_pipeline.governance.erasure import erase_requests, erase_users
from workdev_pipeline.ingest.backlog import Backlog
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.sensors import ingest_job
from workdev_pipeline.sql_files import query
from workdev_pipeline.status import Limits, diagnose, read_status, render


@pytest.fixture(params=["bigquery", "redshift"])
def engine(request: pytest.FixtureRequest, db: str) -> EngineSetup:
    return _bigquery(request) if request.param == "bigquery" else _redshift(request, db)


def statuses(db: str) -> dict[str, int]:
    """The seed's monitoring query, as written: events per processing_status."""
    with psycopg.connect(db) as conn:
        return {status: count for status, count, _ in conn.execute(EVENT_PROCESSING_METRICS)}


def processed_ids(db: str) -> set[str]:
    with psycopg.connect(db) as conn:
        return {r[0] for r in conn.execute(
            "SELECT event_id::text FROM platform_events WHERE processing_status = 'processed'")}


def sweep(db: str, lake: EventLake, engines: list[str] | None) -> None:
    outcome = Ingestor(db, lake, engines=engines, backoff_seconds=0.01).sweep()
    assert outcome.status == "loaded", outcome.error


def backlog(db: str) -> Backlog:
    with psycopg.connect(db) as conn:
        return Backlog.read(conn, "lake")


def backlog_check(db: str, lake: LakeResource) -> AssetCheckEvaluation:
    """The backlog check, evaluated by Dagster."""
    return materialize([incoming_events, pending_backlog_fresh], instance=DagsterInstance.ephemeral(),
                       selection=AssetSelection.checks(AssetCheckKey(INCOMING_EVENTS, "pending_backlog_fresh")),
                       resources={"postgres": PostgresResource(database_url=db), "lake": lake}
                       ).get_asset_check_evaluations()[0]


def test_an_event_in_the_lake_is_pending_until_every_enabled_engine_delivered_it(
        db: str, engine: EngineSetup, lake: LakeResource) -> None:
    events = lake.events()
    demo(db, 400, days=2)
    sweep(db, events, [engine.name])
    with psycopg.connect(db) as conn:
        first = loadable_ids(conn)
    assert statuses(db) == {"pending": len(first)}  # in the lake, not yet in the engine
    lag = backlog(db).engines_behind
    assert [(g.engine, g.delivered_version, g.events) for g in lag] == [(engine.name, None, len(first))]
    assert engine.name in " ".join(backlog(db).reasons()) and backlog(db).engines_late(-1.0)
    found = read_status(db, events, {engine.name: None})
    assert f"{len(first):,} event(s) pending until delivered" in render(found, diagnose(found, Limits()))
    fresh = backlog_check(db, lake)  # just swept: within the limit, the engine named all the same
    assert fresh.passed and engine.name in fresh.metadata["engines_behind"].value
    with psycopg.connect(db) as conn:  # the lake took them a day ago, the engine still has not delivered them
        conn.execute("UPDATE ingestion_sweeps SET finished_at = finished_at - interval '1 day'")
    late = backlog_check(db, lake)
    assert not late.passed and late.severity == AssetCheckSeverity.ERROR
    assert f"pending until {engine.name} delivers them" in late.description

    assert engine.resource.deliver(db, events).status == "delivered"
    assert statuses(db) == {"processed": len(first)}
    assert backlog(db).engines_behind == ()
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM platform_events WHERE processing_status = 'processed' "
                            "AND processed_at IS NULL").fetchone()[0] == 0

    # the next sweep's events wait for the next delivery; the ones delivered stay processed
    demo(db, 150, days=1, seed=11)
    sweep(db, events, [engine.name])
    assert processed_ids(db) == first
    assert [g.events for g in backlog(db).engines_behind] == [150]
    assert engine.resource.deliver(db, events).status == "delivered"
    with psycopg.connect(db) as conn:
        assert processed_ids(db) == loadable_ids(conn)

    # the engine disabled (a sweep where it is not enabled): it gates nothing any more
    demo(db, 100, days=1, seed=13)
    sweep(db, events, [])
    with psycopg.connect(db) as conn:
        assert processed_ids(db) == loadable_ids(conn)
    assert backlog(db).engines_behind == ()


def test_a_replayed_event_waits_for_the_delivery_of_its_days_rebuild(
        db: str, lake: LakeResource, request: pytest.FixtureRequest) -> None:
    setup = _redshift(request, db)
    events = lake.events()
    demo(db, 200, days=1)
    bad = {str(i) for i in emit_bad_budgets(db, 5)}
    sweep(db, events, [setup.name])
    assert setup.resource.deliver(db, events).status == "delivered"
    assert statuses(db) == {"processed": 200, "failed": 5}

    with psycopg.connect(db, autocommit=True) as conn:
        accept_any_budget(conn)
    replayed = Ingestor(db, events, backoff_seconds=0.01).replay()
    assert replayed.events_failed == 0 and replayed.lake_version == events.version()
    assert statuses(db) == {"processed": 200, "pending": 5}  # in the lake, not in Redshift yet
    assert not bad & processed_ids(db)
    assert [(g.engine, g.events) for g in backlog(db).engines_behind] == [("redshift", 5)]
    assert setup.resource.deliver(db, events).status == "delivered"
    assert statuses(db) == {"processed": 205}


def test_with_no_engine_enabled_processed_is_the_lake_alone(db: str, lake: LakeResource,
                                                            request: pytest.FixtureRequest) -> None:
    setup = _redshift(request, db)
    events = lake.events()
    demo(db, 300, days=2)
    sweep(db, events, [])
    assert statuses(db) == {"processed": 300}
    # a delivery of an engine the sweeps do not register gates nothing either
    assert setup.resource.deliver(db, events).status == "delivered"
    demo(db, 50, days=1, seed=5)
    sweep(db, events, None)  # None: the registration left as it is
    assert statuses(db) == {"processed": 350}
    assert backlog(db).engines_behind == ()


def test_the_code_locations_sweep_registers_its_engines(db: str, engine: EngineSetup, lake: LakeResource,
                                                        instance: DagsterInstance) -> None:
    defs = engine_defs(db, lake, engine)
    demo(db, 120, days=1)
    assert run_job(defs, ingest_job.name, instance).success
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT engine, enabled FROM lake_engines").fetchall() == [(engine.name, True)]
    assert statuses(db) == {"pending": 120}
    assert run_job(defs, delivery_job_name(engine.name), instance).success
    assert statuses(db) == {"processed": 120}


def test_a_sweep_killed_after_its_lake_commit_then_redone_waits_for_the_delivery_of_that_commit(
        db: str, lake: LakeResource, request: pytest.FixtureRequest) -> None:
    setup = _redshift(request, db)
    events = lake.events()
    demo(db, 100, days=1)
    sweep(db, events, [setup.name])
    assert setup.resource.deliver(db, events).status == "delivered"
    demo(db, 80, days=1, seed=17)
    killed = sweep_in_subprocess(db, Path(lake.location().root), crash_at="after_commit")
    assert killed.returncode != 0, killed.stdout
    wait_until_lock_released(db)
    before_redo = events.version()
    redone = Ingestor(db, events, engines=[setup.name], backoff_seconds=0.01).sweep()
    assert redone.redone and redone.lake_version == before_redo
    assert statuses(db) == {"processed": 100, "pending": 80}
    assert setup.resource.deliver(db, events).status == "delivered"
    assert statuses(db) == {"processed": 180}


def test_the_pipeline_role_registers_the_engines_and_records_the_lake_versions(
        db: str, lake: LakeResource, login_role) -> None:
    events = lake.events()
    demo(db, 60, days=1)
    bad = emit_bad_budgets(db, 2)
    url = login_role("workdev_pipeline")
    sweep(url, events, ["bigquery"])
    with psycopg.connect(db, autocommit=True) as conn:
        assert conn.execute("SELECT engine, enabled FROM lake_engines").fetchall() == [("bigquery", True)]
        assert conn.execute("SELECT lake_version FROM ingestion_sweeps").fetchall() == [(events.version(),)]
        accept_any_budget(conn)
    assert Ingestor(url, events, backoff_seconds=0.01).replay().events_failed == 0
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT lake_version FROM event_failures WHERE event_id = ANY(%s)",
                            (bad,)).fetchall() == [(events.version(),)] * 2
    assert Ingestor(url, events, engines=[], backoff_seconds=0.01).sweep().status == "idle"  # registers all the same
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT engine, enabled FROM lake_engines").fetchall() == [("bigquery", False)]


def test_an_erased_event_is_pending_while_an_enabled_engines_refresh_waits(
        db: str, lake: LakeResource, request: pytest.FixtureRequest) -> None:
    setup = _redshift(request, db)
    events = lake.events()
    demo(db, 300, days=1)
    sweep(db, events, [setup.name])
    assert setup.resource.deliver(db, events).status == "delivered"
    with psycopg.connect(db) as conn:
        user_id, own = conn.execute("SELECT user_id::text, count(*) FROM platform_event_store "
                                    "WHERE user_id IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1").fetchone()
    stores = [*EnabledWarehouses(lake=lake).governed(db), *setup.resource.governance(db, lake=events)]
    impatient = make_conninfo(db, options="-c lock_timeout=1000")
    with psycopg.connect(db, autocommit=True) as holder:
        holder.execute(query("lake/lock_engine"), {"engine": setup.name})  # Redshift busy: its refresh cannot run
        with pytest.raises(psycopg.errors.LockNotAvailable):
            erase_users(impatient, [user_id], stores, requested_by="test")
    with psycopg.connect(db) as conn:
        waiting = conn.execute("SELECT count(*) FROM warehouse_event_refresh WHERE consumer = %s",
                               (setup.name,)).fetchone()[0]
        assert conn.execute("SELECT count(*) FROM warehouse_event_refresh WHERE consumer = 'lake'").fetchone()[0] == 0
    assert waiting >= own and statuses(db) == {"processed": 300 - waiting, "pending": waiting}
    erase_requests(db, None, stores)  # the erasure's work finished: Redshift refreshed
    assert statuses(db) == {"processed": 300}

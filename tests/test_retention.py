"""Retention against a real PostgreSQL, a real Delta lake and real Dagster runs and schedules: events spanning
8 years in all four categories; exactly the expired ones go, from the store, its dead letter and the lake;
whole monthly partitions are dropped; a dry run reports the same and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, DefaultScheduleStatus, Definitions, RunRequest, build_schedule_context
from psycopg.types.json import Jsonb

from tests.ingest_helpers import lake_ids, sweep_in_subprocess, wait_until_lock_released
from workdev_pipeline import catalog
from workdev_pipeline.assets.governance import RETENTION_OP
from workdev_pipeline.assets.keys import RETENTION_RUNS
from workdev_pipeline.demo import generate_events, generate_users
from workdev_pipeline.governance.common import GovernanceInputError
from workdev_pipeline.governance.retention import apply_retention, verify_retention
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.schedules.governance import retention_schedule

#: The policy, from the catalog (not from the code under test): days kept per category.
KEPT_DAYS = {name: c.retention_days for name, c in catalog.CATEGORIES.items()}
CATEGORY_OF = {t.name: t.category.name for t in catalog.EVENT_TYPES}
TYPES_BY_CATEGORY = {c: [t.name for t in catalog.types_in_category(c)] for c in catalog.CATEGORIES}
STORE_COLUMNS = ("event_id", "event_type", "event_category", "user_id", "entity_type", "entity_id", "event_data",
                 "metadata", "source", "timestamp", "session_id")


def dagster_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)



def expired(event: dict, as_of: datetime) -> bool:
    return event["timestamp"] < as_of - timedelta(days=KEPT_DAYS[CATEGORY_OF[event["event_type"]]])


class History:
    """Eight years of events, placed so that every case occurs: months wholly expired (dropped), a month 4 years
    back holding only 1- and 2-year events (dropped: everything in it expired), months with expired and kept
    events (rows deleted), each category's cut-off straddled by an hour, an event 9 years back in the DEFAULT
    partition, dead-lettered events old and new."""

    def __init__(self, as_of: datetime, seed: int = 11, *, populate: bool = True) -> None:
        self.as_of = as_of
        users = generate_users(40, seed=seed, now=as_of)
        pool = list(generate_events(users, 4_000, days=1.0, seed=seed, now=as_of))
        by_category: dict[str, list[dict]] = {c: [] for c in TYPES_BY_CATEGORY}
        for e in pool:
            by_category[CATEGORY_OF[e["event_type"]]].append(e)
        self._pool = {c: iter(es) for c, es in by_category.items()}
        self.events: list[dict] = []
        if not populate:
            return
        self.only_short_month_age = 4 * 365 + 100  # days back: a month with interaction + user_activity only
        for age in (0.2, 3, 40, 200, 300, 370, 500, 700, 800, 1000, 1400, 2000, 2500, 2700, 2800, 2900):
            for category in TYPES_BY_CATEGORY:
                for k in range(3):
                    self.add(category, as_of - timedelta(days=age, hours=3 * k))
        for k in range(4):
            self.add("interaction", as_of - timedelta(days=self.only_short_month_age, hours=k))
            self.add("user_activity", as_of - timedelta(days=self.only_short_month_age, hours=k + 5))
        for category, days in KEPT_DAYS.items():  # the line itself, an hour either side
            for hours in (-1, 1):
                self.add(category, as_of - timedelta(days=days) + timedelta(hours=hours))
        self.in_default = self.add("transaction", as_of - timedelta(days=9 * 365 + 40))
        self.old_invalid = self.add("user_activity", as_of - timedelta(days=1000), bad=True)
        self.new_invalid = self.add("user_activity", as_of - timedelta(days=10), bad=True)

    def add(self, category: str, timestamp: datetime, *, bad: bool = False) -> dict:
        template = next(e for e in self._pool[category] if not bad or e["event_type"] == "user.login")
        event = {**template, "event_id": uuid.uuid4(), "timestamp": timestamp}
        if bad:  # fails the type's JSON schema: the sweep dead-letters it
            event["event_data"] = {"method": "carrier-pigeon"}
        self.events.append(event)
        return event

    def insert(self, conn: psycopg.Connection, events: list[dict] | None = None) -> None:
        """Straight into the store as superuser (the emit functions refuse expired events, rightly)."""
        events = self.events if events is None else events
        first = min(e["timestamp"] for e in events if e is not getattr(self, "in_default", None))
        conn.execute("SELECT ensure_event_partitions(%s, %s)", (first, self.as_of))
        with conn.cursor() as cur, cur.copy(f"COPY platform_event_store ({', '.join(STORE_COLUMNS)}) FROM STDIN") as cp:
            for e in events:
                cp.write_row((e["event_id"], e["event_type"], CATEGORY_OF[e["event_type"]], e["user_id"],
                              e["entity_type"], e["entity_id"], Jsonb(e["event_data"]), Jsonb(e["metadata"]),
                              e["source"], e["timestamp"], e["session_id"]))

    def bad_ids(self) -> set:
        return {e["event_id"] for e in (getattr(self, "old_invalid", None), getattr(self, "new_invalid", None)) if e}

    def expected(self, *, loaded_only: bool = False) -> Counter[str]:
        bad = self.bad_ids()
        return Counter(CATEGORY_OF[e["event_type"]] for e in self.events
                       if expired(e, self.as_of) and not (loaded_only and e["event_id"] in bad))

    def kept_ids(self, *, loaded_only: bool = False) -> set[str]:
        bad = self.bad_ids()
        return {str(e["event_id"]) for e in self.events
                if not expired(e, self.as_of) and not (loaded_only and e["event_id"] in bad)}


def partition_of(conn: psycopg.Connection, timestamp: datetime) -> str:
    return conn.execute("SELECT tableoid::regclass::text FROM platform_event_store WHERE \"timestamp\" = %s LIMIT 1",
                        (timestamp,)).fetchone()[0]


def store_state(conn: psycopg.Connection) -> tuple:
    partitions = [r[0] for r in conn.execute("SELECT partition_name FROM event_store_partitions()")]
    ids = sorted(r[0] for r in conn.execute("SELECT event_id::text FROM platform_event_store"))
    failures = conn.execute("SELECT count(*) FROM event_failures").fetchone()[0]
    return partitions, ids, failures


def lake_state(lake: LakeResource) -> tuple:
    """The lake's version and data files: unchanged by anything that writes nothing."""
    snapshot = lake.snapshot()
    return snapshot.version, sorted(snapshot.files().column("path").to_pylist())


def materialized(result) -> dict:
    return next(m.metadata for m in result.asset_materializations_for_node(RETENTION_OP)
                if m.asset_key == RETENTION_RUNS)


def retention_config(as_of: datetime, dry_run: bool) -> dict:
    return {"ops": {RETENTION_OP: {"config": {"dry_run": dry_run, "as_of": as_of.isoformat()}}}}


def test_retention_over_eight_years_dry_run_then_for_real(db: str, conn: psycopg.Connection, defs: Definitions,
                                                          lake: LakeResource,
                                                          instance: DagsterInstance) -> None:
    as_of = dagster_now()
    history = History(as_of)
    history.insert(conn)
    sweep = lake.ingestor(db).sweep()
    assert sweep.events_failed == 2 and sweep.events_loaded == len(history.events) - 2
    conn.execute("INSERT INTO warehouse_rebuild_queue (consumer, event_date, reason) VALUES ('lake', %s, 'test')",
                 ((as_of - timedelta(days=9 * 365)).date(),))  # bookkeeping of a long-gone day
    assert partition_of(conn, history.in_default["timestamp"]) == "platform_event_store_default"

    # which partitions must go: every event in them expired (or empty and wholly before the longest retention)
    oldest = as_of - timedelta(days=max(KEPT_DAYS.values()))
    bounds = conn.execute("SELECT partition_name, range_start, range_end FROM event_store_partitions() "
                          "WHERE NOT is_default").fetchall()
    doomed, trimmed = set(), set()
    for name, start, end in bounds:
        inside = [e for e in history.events if start <= e["timestamp"] < end]
        if (inside and all(expired(e, as_of) for e in inside)) or (not inside and end <= oldest):
            doomed.add(name)
        elif any(expired(e, as_of) for e in inside):
            trimmed.add(name)
    short_month = partition_of(conn, as_of - timedelta(days=history.only_short_month_age))
    assert short_month in doomed  # 4 years back, only 1- and 2-year events: all expired
    assert partition_of(conn, as_of - timedelta(days=2800)) in doomed  # beyond 7 years
    assert partition_of(conn, as_of - timedelta(days=1000)) in trimmed  # transactions stay, interactions go
    assert len(doomed) >= 10 and len(trimmed) >= 10

    # dry run: the very counts, nothing touched, nothing materialized (its check does not run)
    before, files_before = store_state(conn), lake_state(lake)
    job = defs.resolve_job_def("apply_retention")
    dry = job.execute_in_process(instance=instance, run_config=retention_config(as_of, dry_run=True))
    assert dry.success
    assert not dry.get_asset_materialization_events() and not dry.get_asset_check_evaluations()
    observed = dry.get_asset_observation_events()[0].event_specific_data.asset_observation.metadata
    assert observed["dry_run"].value is True
    assert observed["postgres_events_by_category"].value == dict(history.expected())
    assert observed["lake_events_by_category"].value == dict(history.expected(loaded_only=True))
    assert observed["partitions_dropped"].value == len(doomed)
    assert observed["dead_letter_rows"].value == 1
    assert store_state(conn) == before and lake_state(lake) == files_before

    # for real
    run = job.execute_in_process(instance=instance, run_config=retention_config(as_of, dry_run=False))
    assert run.success
    meta = materialized(run)
    assert meta["postgres_events_by_category"].value == dict(history.expected())
    assert meta["lake_events_by_category"].value == dict(history.expected(loaded_only=True))
    assert meta["partitions_dropped"].value == len(doomed)
    assert [(e.check_name, e.passed) for e in run.get_asset_check_evaluations()] == [("retention_enforced", True)]

    # PostgreSQL: exactly the kept events remain; the whole partitions are gone, the trimmed ones are not
    kept = {r[0] for r in conn.execute("SELECT event_id::text FROM platform_event_store")}
    assert kept == history.kept_ids()
    for name in doomed:
        assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None, name
    for name in trimmed:
        assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None, name
    remaining = {r[0] for r in conn.execute("SELECT partition_name FROM event_store_partitions()")}
    assert remaining == {r[0] for r in bounds} - doomed | {"platform_event_store_default"}
    # the dead letter lost the expired event's row, kept the recent one; bookkeeping of expired days went
    assert [r[0] for r in conn.execute("SELECT event_id FROM event_failures")] == [history.new_invalid["event_id"]]
    assert conn.execute("SELECT count(*) FROM warehouse_rebuild_queue").fetchone()[0] == 0
    # the lake: exactly the kept, loaded events remain, each once, in one DELETE commit; no file of the old
    # version is left on disk (vacuumed), nor its expired rows in the log's statistics
    held = lake_ids(lake.events())
    assert len(held) == len(set(held)) and set(held) == history.kept_ids(loaded_only=True)
    assert [h["operation"] for h in lake.events().table().history(3)] == ["VACUUM END", "VACUUM START", "DELETE"]
    on_disk = {str(p.relative_to(lake.events().uri)) for p in Path(lake.events().uri).rglob("*.parquet")}
    assert on_disk == set(lake.snapshot().files().column("path").to_pylist())
    days_left = {d.isoformat() for d in lake.snapshot().days()}
    assert days_left == {e["timestamp"].astimezone(UTC).date().isoformat() for e in history.events
                         if not expired(e, as_of) and e is not history.old_invalid and e is not history.new_invalid}
    # its partition checks still reconcile with PostgreSQL where days were rewritten
    check_day = (as_of - timedelta(days=1000)).date().isoformat()
    checks = defs.resolve_job_def("check_lake_days").execute_in_process(
        instance=instance, tags={"dagster/partition": check_day})
    assert all(e.passed for e in checks.get_asset_check_evaluations())

    # a second run finds nothing left; both runs are on record
    again = job.execute_in_process(instance=instance, run_config=retention_config(as_of, dry_run=False))
    meta = materialized(again)
    assert meta["postgres_events"].value == 0 and meta["lake_events"].value == 0
    runs = conn.execute("SELECT dry_run, status FROM retention_runs ORDER BY retention_run_id").fetchall()
    assert runs == [(True, "finished"), (False, "finished"), (False, "finished")]


def test_check_fails_while_expired_events_remain(db: str, conn: psycopg.Connection,
                                                 lake: LakeResource) -> None:
    as_of = dagster_now()
    history = History(as_of, seed=5)
    history.insert(conn)
    lake.ingestor(db).sweep()
    from workdev_pipeline.governance.warehouse import governed_warehouses

    engines = governed_warehouses(lake, db)
    assert verify_retention(db, engines).as_of is None  # never applied: not passed
    apply_retention(db, engines, as_of=as_of - timedelta(days=30))  # a month ago: what expired since is left
    found = verify_retention(db, engines)
    assert found.passed and found.expired_since  # as of its run nothing is left; newer expiries reported apart
    history.add("interaction", as_of - timedelta(days=800))  # an expired event slips in (a superuser insert)
    conn.execute("INSERT INTO platform_event_store (event_id, event_type, event_category, \"timestamp\") "
                 "VALUES (%s, 'project.viewed', 'interaction', %s)", (uuid.uuid4(), as_of - timedelta(days=800)))
    found = verify_retention(db, engines)
    assert not found.passed and found.postgres == {"interaction": 1}


def test_the_pipeline_role_can_apply_retention(db: str, conn: psycopg.Connection, login_role) -> None:
    as_of = dagster_now()
    history = History(as_of, seed=3)
    history.insert(conn)
    report = apply_retention(login_role("workdev_pipeline"), as_of=as_of)  # SECURITY DEFINER partition work
    assert dict(report.postgres) == dict(history.expected()) and report.partitions_dropped
    assert {r[0] for r in conn.execute("SELECT event_id::text FROM platform_event_store")} == history.kept_ids()


def test_bad_instants_are_refused() -> None:
    with pytest.raises(GovernanceInputError, match="in the future"):
        apply_retention("postgresql://unused", as_of=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(GovernanceInputError, match="not an ISO 8601 instant"):
        apply_retention("postgresql://unused", as_of="yesterday")


def test_schedule_runs_daily_at_two_utc_as_of_its_tick(db: str, defs: Definitions, instance: DagsterInstance,
                                                       conn: psycopg.Connection) -> None:
    assert retention_schedule.cron_schedule == "0 2 * * *"
    assert retention_schedule.execution_timezone == "UTC"
    assert retention_schedule.default_status == DefaultScheduleStatus.RUNNING
    assert defs.resolve_schedule_def("retention_schedule").job_name == "apply_retention"

    now = datetime.now(UTC)
    tick = now.replace(hour=2, minute=0, second=0, microsecond=0)
    if tick > now:
        tick -= timedelta(days=1)
    request = retention_schedule(build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert isinstance(request, RunRequest)
    assert request.run_key == f"retention-{tick:%Y-%m-%d}"
    config = request.run_config["ops"][RETENTION_OP]["config"]
    assert config["as_of"] == tick.isoformat() and not config.get("dry_run", False)
    # the same tick evaluated again (a retry, a catch-up) asks for the same run
    again = retention_schedule(build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert again.run_key == request.run_key and again.run_config == request.run_config

    history = History(tick, seed=9)
    history.insert(conn)
    defs.resources["lake"].ingestor(db).sweep()
    run = defs.resolve_job_def("apply_retention").execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags)
    assert run.success
    meta = materialized(run)
    assert meta["as_of"].value == tick.isoformat()
    assert {r[0] for r in conn.execute("SELECT event_id::text FROM platform_event_store")} == history.kept_ids()


@pytest.mark.slow
def test_cli_retention_dry_run_then_for_real(db: str, conn: psycopg.Connection,
                                             lake: LakeResource) -> None:
    as_of = dagster_now()
    history = History(as_of, seed=21)
    history.insert(conn)
    lake.ingestor(db).sweep()
    env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": lake.uri}
    cli = Path(sys.executable).with_name("workdev-pipeline")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cli), "retention", "--as-of", as_of.isoformat(), *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    expected = history.expected()
    dry = run("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing changed; events would go:" in dry.stdout
    for category, n in expected.items():
        assert f"{category} " in dry.stdout and f"postgres {n:,}," in dry.stdout.split(category, 1)[1].splitlines()[0]
    assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == len(history.events)
    done = run()
    assert done.returncode == 0, done.stderr
    assert "partitions dropped: platform_event_store_" in done.stdout
    assert {r[0] for r in conn.execute("SELECT event_id::text FROM platform_event_store")} == history.kept_ids()
    future = subprocess.run([str(cli), "retention", "--as-of", "2999-01-01"], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert future.returncode == 2 and "error: as_of 2999-01-01T00:00:00+00:00 is in the future" in future.stderr


def test_retention_with_a_sweep_killed_after_its_commit_keeps_every_kept_event_once(
        db: str, conn: psycopg.Connection, tmp_path: Path) -> None:
    """Three sweeps of one day, the third killed after its Delta commit (its watermark not yet advanced):
    retention finishes that sweep before it deletes, so at the end every kept event is held exactly once."""
    from workdev_pipeline.governance.warehouse import LakeGovernedWarehouse

    lake = EventLake(LakeLocation.from_env(str(tmp_path / "lake")))
    as_of = dagster_now()
    history = History(as_of, seed=17, populate=False)
    noon = datetime.combine((as_of - timedelta(days=500)).date(), datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    for k in range(3):  # 1-2 years old: interactions expire, the rest stays
        batch = [history.add(c, noon + timedelta(minutes=10 * k + i)) for c in TYPES_BY_CATEGORY for i in range(3)]
        history.insert(conn, batch)
        if k < 2:
            assert Ingestor(db, lake).sweep().status == "loaded"
        else:
            assert sweep_in_subprocess(db, Path(lake.location.root), crash_at="after_commit").returncode == -9
            wait_until_lock_released(db)
    day = noon.date()
    assert len(lake.snapshot().day_files(day)) == 3

    report = apply_retention(db, [LakeGovernedWarehouse(Ingestor(db, lake))], as_of=as_of)
    assert report.warehouse("lake").days_rewritten == [day]
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 0
    assert Ingestor(db, lake).sweep().status == "idle"
    held = lake_ids(lake)
    assert len(held) == len(set(held)) and set(held) == history.kept_ids()

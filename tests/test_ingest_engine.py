"""The ingestion engine against a real PostgreSQL and a real Delta lake: exactly once, whatever happens."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetSelection, DagsterInstance, materialize

from tests.faults import LakeMount, lake_mount
from tests.ingest_helpers import (
    accept_any_budget,
    days_in_postgres,
    demo,
    emit_bad_budgets,
    lake_days,
    lake_ids,
    loadable_ids,
    sweep_in_subprocess,
    wait_until_lock_released,
)
from tests.seed_queries import EVENT_PROCESSING_METRICS, FAILED_EVENTS
from tests.waiting import wait_until
from workdev_pipeline.assets.checks import pending_backlog_fresh
from workdev_pipeline.assets.ingestion import incoming_events
from workdev_pipeline.assets.keys import INCOMING_EVENTS
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.transient import TRANSIENT_ERRORS
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource


@pytest.fixture
def files(tmp_path: Path) -> EventLake:
    return EventLake(LakeLocation.from_env(str(tmp_path / "lake")))


@pytest.fixture
def ingestor(db: str, files: EventLake) -> Ingestor:
    return Ingestor(db, files, backoff_seconds=0.01)


def assert_exactly_once(conn: psycopg.Connection, files: EventLake) -> None:
    held = lake_ids(files)
    repeated = [i for i, n in Counter(held).items() if n > 1]
    assert not repeated, f"{len(repeated)} event(s) held more than once, e.g. {repeated[:3]}"
    expected = loadable_ids(conn)
    assert set(held) == expected, f"missing {len(expected - set(held))}, unexpected {len(set(held) - expected)}"
    assert lake_days(files) == days_in_postgres(conn)


def lake_root(files: EventLake) -> Path:
    return Path(files.location.root)


def test_a_busy_neighbour_database_never_makes_the_sweep_stop_short(admin_url: str, conn: psycopg.Connection,
                                                                     ingestor: Ingestor) -> None:
    # Another database runs short transactions back to back: one that ends between a sweep's snapshot and its read
    # of pg_stat_activity cannot be attributed, and counts as ours (cautious) -- it must not stop the sweep below
    # what this database has committed (one query in ~700 meets it here; the sweep asks again)
    assert ingestor.sweep().status == "idle"  # registers the consumer
    stop = threading.Event()

    def neighbour() -> None:
        with psycopg.connect(admin_url, autocommit=True) as other:
            while not stop.is_set():
                other.execute("SELECT pg_current_xact_id()")

    threads = [threading.Thread(target=neighbour) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        short = 0
        for _ in range(3_000):
            committed = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
            _, tx_high, _ = ingestor._sweep_bounds(conn)
            short += tx_high <= committed
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert short == 0, f"{short} of 3,000 bounds stopped below a committed transaction of this database"


def test_sweep_loads_every_event_once_enriched(db: str, conn: psycopg.Connection, files: EventLake,
                                               ingestor: Ingestor) -> None:
    demo(db, 3_000)
    outcome = ingestor.sweep(run_id="r1")
    assert outcome.status == "loaded" and outcome.events_loaded + outcome.events_failed == 3_000
    assert_exactly_once(conn, files)
    assert ingestor.sweep().status == "idle"  # nothing new: nothing written
    assert_exactly_once(conn, files)

    # enrichment: role and tenure from user_attributes, device from the user agent, geo from the IP
    row = conn.execute("""SELECT e.event_id::text, u.user_role, e."timestamp" - u.signed_up_at, e.metadata
                          FROM platform_event_store e JOIN user_attributes u USING (user_id)
                          WHERE e.metadata ? 'user_agent' AND e.metadata->>'user_agent' LIKE '%%Windows NT%%Chrome%%'
                            AND e.metadata->>'user_agent' NOT LIKE '%%OPR/%%'  -- Opera and Edge carry "Chrome" too
                            AND e.metadata->>'user_agent' NOT LIKE '%%Edg/%%'
                          LIMIT 1""").fetchone()
    event_id, role, age, metadata = row
    got = files.snapshot().query("SELECT user_role, user_tenure_days, device_info, metadata::varchar, "
                                 "event_data::varchar FROM platform_events WHERE event_id = ?", [event_id])[0]
    assert got[0] == role and got[1] == age.days
    assert got[2]["device_type"] == "desktop" and got[2]["browser"] == "Chrome" and got[2]["os"] == "Windows"
    assert "ip_address" not in got[3] and "user_agent" not in got[3]  # personal data stays in PostgreSQL
    assert metadata["ip_address"]
    # every row's day directory is the UTC day of its timestamp
    misplaced = files.snapshot().query("SELECT count(*) FROM platform_events WHERE "
                                       "event_date <> (timezone('UTC', \"timestamp\"))::date")[0][0]
    assert misplaced == 0
    # one sweep, one Delta commit, carrying the sweep id as the consumer's application transaction
    assert files.version() == outcome.lake_version == 1
    assert files.committed_version("lake") == outcome.sweep_id
    # statistics only on the columns queries prune by: neither the log nor a file's footer holds a min/max user id
    path = Path(files.uri) / files.snapshot().day_files(files.snapshot().days()[0])[0]
    footer = pq.ParquetFile(path).metadata.row_group(0)
    with_stats = {footer.column(i).path_in_schema for i in range(footer.num_columns)
                  if footer.column(i).statistics is not None and footer.column(i).statistics.has_min_max}
    assert with_stats == {"event_type", "event_category", "timestamp", "ingested_at"}
    actions = [json.loads(line) for p in (Path(files.uri) / "_delta_log").glob("*.json")
               for line in p.read_text().splitlines()]
    stats = [json.loads(a["add"]["stats"]) for a in actions if "add" in a]
    assert stats and all(set(s["minValues"]) == with_stats for s in stats)
    # the bookkeeping: one sync-status row per day written, the seed's monitoring view says processed
    sync = conn.execute("SELECT count(*), sum(events_loaded) FROM warehouse_sync_status "
                        "WHERE warehouse = 'lake' AND status = 'succeeded'").fetchone()
    assert sync == (len(outcome.days), outcome.events_loaded)
    statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses.get("pending", 0) == 0 and statuses["processed"] == outcome.events_loaded


def test_a_sweep_with_events_loads_the_enrichment_on_a_thread_of_its_own_once(
        db: str, files: EventLake, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    load = Ingestor.load_enrichment

    def recorded(self: Ingestor) -> None:
        loads.append(threading.current_thread().name)
        load(self)

    monkeypatch.setattr(Ingestor, "load_enrichment", recorded)
    ingestor = Ingestor(db, files, backoff_seconds=0.01)
    assert ingestor.sweep().status == "idle" and loads == []  # nothing to read: nothing loaded
    for seed in (1, 2):
        demo(db, 200, seed=seed)
        assert ingestor.sweep().status == "loaded"
    assert loads == ["enrichment-load"]  # overlapping the claim and the first batches, once per ingestor


def test_garbage_is_dead_lettered_or_enriched_with_nulls(db: str, conn: psycopg.Connection, files: EventLake,
                                                         ingestor: Ingestor) -> None:
    stranger = uuid.uuid4()  # not in user_profiles
    good = AnalyticsClient(db, user_id=stranger)
    with good:
        bad_budget = good.track("project.created", {"title": "x", "budget": "lots", "project_type": "fixed"})
        bad_enum = good.track("user.login", {"method": "carrier-pigeon"})
        garbage_ua = good.track("user.login", {"method": "github"},
                                metadata={"user_agent": "\x7f\u2603 garbage/((", "ip_address": "10.1.2.3"})
        bad_ip = good.track("user.login", {"method": "github"}, metadata={"ip_address": "999.1.1.1"})
        public = good.track("user.login", {"method": "github"}, metadata={"ip_address": "8.8.8.8"})
    demo(db, 500)
    outcome = ingestor.sweep()
    assert outcome.status == "loaded" and outcome.events_failed >= 2

    failed = dict(conn.execute("SELECT event_id, error_message FROM platform_events "
                               "WHERE processing_status = 'failed'").fetchall())
    assert failed[bad_budget] == "event_data.budget must be of type number, got string"
    assert "method" in failed[bad_enum]
    assert garbage_ua not in failed and bad_ip not in failed and public not in failed
    rows = {r[0]: r[1:] for r in files.snapshot().query(
        "SELECT event_id, user_role, user_tenure_days, geo_location, device_info FROM platform_events "
        "WHERE event_id IN (?, ?, ?)", [str(garbage_ua), str(bad_ip), str(public)])}
    assert rows[str(garbage_ua)][0] is None and rows[str(garbage_ua)][1] is None  # unknown user: nulls
    assert rows[str(garbage_ua)][2]["country"] is None  # private address
    assert rows[str(garbage_ua)][3]["device_type"] == "other"
    assert rows[str(bad_ip)][2]["country"] is None
    assert rows[str(public)][2]["country"] == "US"
    assert_exactly_once(conn, files)
    # the seed's monitoring query tells the truth
    statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses == {"processed": outcome.events_loaded, "failed": outcome.events_failed}


def test_out_of_order_commits_are_never_skipped(db: str, conn: psycopg.Connection, files: EventLake,
                                                ingestor: Ingestor) -> None:
    """A long transaction holds an early transaction id and an early timestamp; later ones commit first."""
    user = uuid.uuid4()
    early = datetime.now(UTC) - timedelta(minutes=10)
    with psycopg.connect(db) as slow:  # BEGIN: not committed until the end of the block
        slow.execute("SELECT emit_platform_event('user.login', %s, NULL, NULL, '{\"method\": \"github\"}', "
                     "'{}', 'app', NULL, NULL, %s)", (user, early))
        with AnalyticsClient(db, user_id=user) as fast:
            later = [fast.track("user.login", {"method": "google"}) for _ in range(5)]
        first = ingestor.sweep()
        # the sweep stops below the open transaction: the later events wait, they are not skipped
        assert first.events_loaded == 0
        statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
        assert statuses == {"pending": 5}
        slow.commit()
    second = ingestor.sweep()
    assert second.events_loaded == 6
    assert set(map(str, later)) <= set(lake_ids(files))
    assert_exactly_once(conn, files)


def test_late_event_lands_in_its_own_day(db: str, conn: psycopg.Connection, files: EventLake,
                                         ingestor: Ingestor) -> None:
    demo(db, 500, days=1)
    ingestor.sweep()
    old_day = (datetime.now(UTC) - timedelta(days=20)).replace(hour=12)
    with AnalyticsClient(db, user_id=uuid.uuid4()) as c:
        late = c.track("user.login", {"method": "github"}, timestamp=old_day)
    outcome = ingestor.sweep()
    assert outcome.days == {old_day.date(): 1}
    assert str(late) in {r[0] for r in files.snapshot().query("SELECT event_id FROM platform_events",
                                                              days=[old_day.date()])}
    assert_exactly_once(conn, files)


def test_rebuild_is_one_commit_idempotent_and_touches_only_its_days(db: str, conn: psycopg.Connection,
                                                                    files: EventLake, ingestor: Ingestor) -> None:
    demo(db, 4_000, days=5)
    ingestor.sweep()
    days = files.snapshot().days()
    assert len(days) >= 5
    target, others = days[1:4], [d for d in days if d not in days[1:4]]
    untouched = {d: files.snapshot().day_files(d) for d in others}
    before = files.version()

    first = ingestor.rebuild(target)
    assert files.version() == before + 1 == first.lake_version  # a range is one commit
    rows = sorted(files.snapshot().query("SELECT * EXCLUDE (ingested_at), ingested_at FROM platform_events",
                                         days=target))
    second = ingestor.rebuild(target)
    assert first.events_loaded == second.events_loaded == sum(days_in_postgres(conn)[d.isoformat()] for d in target)
    assert sorted(files.snapshot().query("SELECT * EXCLUDE (ingested_at), ingested_at FROM platform_events",
                                         days=target)) == rows  # the very same rows
    assert {d: files.snapshot().day_files(d) for d in others} == untouched  # other days' files untouched
    assert_exactly_once(conn, files)


@pytest.mark.parametrize("crash_at", ["after_claim", "mid_write", "after_commit"])
def test_sweep_killed_anywhere_then_rerun_is_exactly_once(db: str, conn: psycopg.Connection, files: EventLake,
                                                          ingestor: Ingestor, crash_at: str) -> None:
    demo(db, 2_000)
    killed = sweep_in_subprocess(db, lake_root(files), crash_at=crash_at)
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 1
    demo(db, 300, seed=8)  # more traffic arrives meanwhile
    redo = ingestor.sweep()
    assert redo.status == "loaded" and redo.redone == (crash_at == "after_commit")
    assert redo.events_loaded == 2_000 - redo.events_failed  # the killed sweep's range, counted once
    # the traffic that came after the killed sweep's range: a sweep takes it once no transaction it cannot attribute to
    # another database (the other test worker's) is in progress below it
    wait_until(lambda: (ingestor.sweep(), set(lake_ids(files)) >= loadable_ids(conn))[1],
               "sweeps to take the traffic after the killed sweep's range", timeout=120, interval=0.2)
    assert_exactly_once(conn, files)
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 0


@pytest.mark.parametrize("crash_at", ["mid_write", "after_commit"])
def test_rebuild_killed_leaves_the_old_day_or_the_new_one(db: str, conn: psycopg.Connection, files: EventLake,
                                                          ingestor: Ingestor, crash_at: str) -> None:
    demo(db, 1_000, days=2)
    ingestor.sweep()
    day = files.snapshot().days()[0]
    expected = days_in_postgres(conn)[day.isoformat()]
    killed = sweep_in_subprocess(db, lake_root(files), crash_at=crash_at, operation="rebuild", day=day.isoformat())
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert lake_days(files)[day.isoformat()] == expected  # never a missing or partial day
    ingestor.sweep()
    assert_exactly_once(conn, files)


def test_sweep_killed_after_its_commit_then_a_rebuild_of_its_days_keeps_every_event_once(
        db: str, conn: psycopg.Connection, files: EventLake, ingestor: Ingestor) -> None:
    """The watermark lags the lake's commit: a rebuild run first must not lose the sweep's rows or double them."""
    demo(db, 1_500, days=2)
    killed = sweep_in_subprocess(db, lake_root(files), crash_at="after_commit")
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    days = files.snapshot().days()
    rebuilt = ingestor.rebuild(days)
    assert sum(rebuilt.days.values()) == len(loadable_ids(conn))
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 0
    ingestor.sweep()
    assert_exactly_once(conn, files)


def test_transient_failure_leaves_events_pending_then_the_next_sweep_delivers_them(
        db: str, conn: psycopg.Connection, files: EventLake) -> None:
    demo(db, 1_000)
    ingestor = Ingestor(db, files, retry_seconds=0.3, backoff_seconds=0.05)
    lake_root(files).parent.mkdir(parents=True, exist_ok=True)
    lake_root(files).write_text("not a directory")  # the lake's location cannot be written
    first = ingestor.sweep()
    assert first.status == "failed" and first.events_failed == 0 and first.retries >= 1
    assert first.error_kind.startswith("lake"), first.error_kind
    # nothing dead-lettered: every event pending, its retry_count the failed attempts so far, the reason given
    assert conn.execute(FAILED_EVENTS).fetchall() == []
    assert conn.execute("SELECT count(*) FROM event_failures").fetchone()[0] == 0
    attempts = first.retries + 1
    statuses = {s: (c, float(r)) for s, c, r in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses == {"pending": (1_000, attempts)}
    messages = [r[0] for r in conn.execute("SELECT DISTINCT error_message FROM platform_events")]
    assert len(messages) == 1 and messages[0].startswith("transient failure (lake"), messages
    assert conn.execute("SELECT count(*) FROM warehouse_sync_status WHERE status = 'failed'").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 1
    assert files.table() is None

    second = ingestor.sweep()  # the cause is not fixed yet: still pending, the attempts add up
    attempts += second.retries + 1
    assert second.status == "failed" and second.sweep_id == first.sweep_id
    assert conn.execute("SELECT failed_runs FROM pipeline_watermarks WHERE consumer = 'lake'").fetchone()[0] == 2
    assert {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)} == {"pending": 1_000}

    lake_root(files).unlink()  # the cause is fixed: the next sweep resumes on its own, the same range once
    healed = ingestor.sweep()
    assert healed.status == "loaded" and healed.sweep_id == first.sweep_id
    assert healed.events_loaded + healed.events_failed == 1_000
    assert_exactly_once(conn, files)
    statuses = {s: (c, float(r)) for s, c, r in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses["processed"] == (healed.events_loaded, attempts)  # retry_count: the attempts it took
    assert "pending" not in statuses
    assert conn.execute("SELECT failed_runs, last_error_kind FROM pipeline_watermarks WHERE consumer = 'lake'"
                        ).fetchone() == (0, None)


def test_replay_killed_after_resolving_is_finished_by_the_next_run(db: str, conn: psycopg.Connection,
                                                                   files: EventLake, ingestor: Ingestor) -> None:
    demo(db, 600)
    bad = emit_bad_budgets(db, 20)
    assert ingestor.sweep().events_failed >= 20
    accept_any_budget(conn)  # the cause is fixed: the dead-lettered events pass now
    killed = sweep_in_subprocess(db, lake_root(files), crash_at="after_resolve", operation="replay")
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert conn.execute("SELECT count(*) FROM warehouse_rebuild_queue").fetchone()[0] >= 1
    pending = {r[0] for r in conn.execute("SELECT event_id FROM platform_events WHERE processing_status = 'pending'")}
    assert set(bad) <= pending  # resolved, but not in the lake yet: pending, never processed
    Ingestor(db, files).sweep()  # drains the queue of days to rebuild (a new run: it reads the fixed schema)
    assert conn.execute("SELECT count(*) FROM warehouse_rebuild_queue").fetchone()[0] == 0
    assert_exactly_once(conn, files)
    assert set(map(str, bad)) <= set(lake_ids(files))


class _FaultAfterFirstBatch(Ingestor):
    """Brings ``fault`` about once, when the sweep holds its first batch: its range claimed, the lake being written."""

    def __init__(self, *args, fault: Callable[[], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fault: Callable[[], None] | None = fault

    def transformer(self, conn):
        real = super().transformer(conn)
        outer = self

        class Faulting:
            def transform(self, batch, ingested_at):
                if outer.fault is not None:
                    fault, outer.fault = outer.fault, None
                    fault()
                return real.transform(batch, ingested_at)

        return Faulting()


@pytest.fixture
def mounted(files: EventLake) -> Iterator[LakeMount]:
    """The test's lake on a tmpfs of its own (read-only or full on demand: real EROFS / ENOSPC, even for root)."""
    with lake_mount(lake_root(files)) as mount:
        yield mount


def backlog_check(db: str, files: EventLake):
    """The backlog check's evaluation, run through Dagster."""
    result = materialize([incoming_events, pending_backlog_fresh], instance=DagsterInstance.ephemeral(),
                         selection=AssetSelection.checks(AssetCheckKey(INCOMING_EVENTS, "pending_backlog_fresh")),
                         resources={"postgres": PostgresResource(database_url=db),
                                    "lake": LakeResource(uri=str(lake_root(files)))})
    return result.get_asset_check_evaluations()[0]


def test_read_only_lake_during_a_sweep_dead_letters_nothing_and_the_next_sweep_delivers_every_event_once(
        db: str, conn: psycopg.Connection, files: EventLake, mounted: LakeMount) -> None:
    """20,000 events; the lake's file system turns read-only mid-sweep and stays so past the retry budget."""
    demo(db, 1_000)
    Ingestor(db, files).sweep()  # the lake holds the first events
    dead_letter = conn.execute("SELECT count(*) FROM event_failures").fetchone()[0]
    demo(db, 20_000, seed=9)
    ingestor = _FaultAfterFirstBatch(db, files, retry_seconds=1.0, backoff_seconds=0.05, batch_bytes=256 * 1024,
                                     fault=mounted.read_only)
    failed = ingestor.sweep()
    assert ingestor.fault is None and failed.status == "failed", failed
    assert failed.error_kind == "lake file system: Read-only file system", failed.error
    assert conn.execute("SELECT count(*) FROM event_failures").fetchone()[0] == dead_letter  # nothing dead-lettered
    statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses["pending"] == 20_000
    check = backlog_check(db, files)
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert ("pending because the last sweep failed transiently: lake file system: Read-only file system"
            in check.description), check.description
    assert check.metadata["dead_letter"].value == dead_letter and check.metadata["pending"].value == 20_000

    mounted.healthy()  # the fault is over: the next sweep (a new run) delivers everything, once
    healed = Ingestor(db, files).sweep()
    assert healed.status == "loaded" and healed.sweep_id == failed.sweep_id
    assert healed.events_loaded + healed.events_failed == 20_000
    assert_exactly_once(conn, files)
    assert "pending" not in {s for s, _, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert backlog_check(db, files).passed is (dead_letter + healed.events_failed == 0)


@pytest.mark.slow
def test_a_lake_read_only_for_60_s_during_a_sweep_of_300_000_events_heals_with_every_event_once(
        db: str, conn: psycopg.Connection, files: EventLake, mounted: LakeMount) -> None:
    """At the issue's scale: 300,000 pending events, the lake's file system read-only for 60 s from the sweep's
    first batch. The sweep retries for 20 s (so it gives up inside the fault) and leaves all of them pending, the
    backlog check reads red while the fault lasts, and the first sweep after it delivers every event once."""
    demo(db, 300_000, seed=11)
    healed = threading.Event()

    def heal() -> None:
        mounted.healthy()
        healed.set()

    timer = threading.Timer(60.0, heal)

    def fault() -> None:
        mounted.read_only()
        timer.start()

    try:
        failed = _FaultAfterFirstBatch(db, files, retry_seconds=20.0, fault=fault).sweep()
        assert failed.status == "failed" and not healed.is_set(), failed
        assert conn.execute("SELECT count(*) FROM event_failures").fetchone()[0] == 0  # nothing dead-lettered
        assert {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)} == {"pending": 300_000}
        check = backlog_check(db, files)
        assert not check.passed and check.severity == AssetCheckSeverity.ERROR and not healed.is_set()
        assert healed.wait(timeout=120), "the fault did not end"
    finally:
        timer.cancel()
        timer.join()
        if not healed.is_set():
            mounted.healthy()

    delivered = Ingestor(db, files).sweep()
    assert delivered.status == "loaded" and delivered.sweep_id == failed.sweep_id
    assert delivered.events_loaded + delivered.events_failed == 300_000
    assert_exactly_once(conn, files)
    assert "pending" not in {s for s, _, _ in conn.execute(EVENT_PROCESSING_METRICS)}


def test_a_failed_replay_shows_its_days_pending_until_they_are_rebuilt(
        db: str, conn: psycopg.Connection, files: EventLake, mounted: LakeMount) -> None:
    """The seed's monitoring never says processed for an event the lake does not hold: a replay whose rebuild fails
    (the lake's disk full) leaves the resolved events' days queued, and their events pending, until rebuilt."""
    demo(db, 2_000, days=3)
    bad = emit_bad_budgets(db, 30)
    assert Ingestor(db, files).sweep().events_failed >= 30
    accept_any_budget(conn)  # the cause is fixed...
    mounted.full()  # ...but the lake's disk is full
    with pytest.raises(TRANSIENT_ERRORS):
        Ingestor(db, files, retry_seconds=0.5, backoff_seconds=0.05).replay()
    queued = [r[0] for r in conn.execute("SELECT event_date FROM warehouse_rebuild_queue")]
    assert queued, "the replay queued its days before failing"
    assert not set(map(str, bad)) & set(lake_ids(files))  # the lake does not hold them
    on_queued_days = conn.execute(
        "SELECT count(*) FROM platform_event_store e WHERE (e.\"timestamp\" AT TIME ZONE 'UTC')::date = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL)",
        (queued,)).fetchone()[0]
    statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses["pending"] == on_queued_days
    assert statuses["processed"] == len(lake_ids(files)) - sum(lake_days(files).get(d.isoformat(), 0) for d in queued)
    pending = {r[0] for r in conn.execute("SELECT event_id FROM platform_events WHERE processing_status = 'pending'")}
    assert set(bad) <= pending
    check = backlog_check(db, files)
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert f"{len(queued)} day(s) wait for a rebuild" in check.description, check.description

    mounted.healthy()
    Ingestor(db, files).sweep()  # what the sensor requests while days wait: it drains the queue
    assert conn.execute("SELECT count(*) FROM warehouse_rebuild_queue").fetchone()[0] == 0
    assert_exactly_once(conn, files)
    assert set(map(str, bad)) <= set(lake_ids(files))
    assert "pending" not in {s for s, _, _ in conn.execute(EVENT_PROCESSING_METRICS)}


class _ConnectionKillingIngestor(Ingestor):
    """After the first extracted batch, PostgreSQL terminates every other session of the database (as a
    restart would), once. The connection really drops; the sweep must retry and stay exactly-once."""

    killed = False

    def transformer(self, conn):
        real = super().transformer(conn)
        outer = self

        class Killing:
            def transform(self, batch, ingested_at):
                if not outer.killed:
                    outer.killed = True
                    with psycopg.connect(outer.url, autocommit=True) as admin:
                        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                return real.transform(batch, ingested_at)

        return Killing()


def test_connections_dropped_mid_sweep_retry_and_stay_exactly_once(db: str, conn: psycopg.Connection,
                                                                   files: EventLake) -> None:
    demo(db, 3_000)
    ingestor = _ConnectionKillingIngestor(db, files, backoff_seconds=0.01, batch_bytes=64 * 1024)
    outcome = ingestor.sweep()
    assert ingestor.killed and outcome.status == "loaded" and outcome.retries >= 1
    with psycopg.connect(db, autocommit=True) as fresh:
        assert_exactly_once(fresh, files)


def test_concurrent_sweeps_rebuilds_and_producers_stay_exactly_once(db: str, files: EventLake) -> None:
    demo(db, 1_000, days=2)
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(action):
        def run() -> None:
            try:
                while not stop.is_set():
                    action()
            except BaseException as exc:
                errors.append(exc)
        return run

    seeds = iter(range(100, 10_000))
    today = datetime.now(UTC).date()
    threads = [
        threading.Thread(target=guarded(lambda: demo(db, 200, days=2, seed=next(seeds)))),
        threading.Thread(target=guarded(lambda: Ingestor(db, files).sweep())),
        threading.Thread(target=guarded(lambda: Ingestor(db, files).sweep())),
        threading.Thread(target=guarded(lambda: Ingestor(db, files).rebuild([today, today - timedelta(days=1)]))),
    ]
    for t in threads:
        t.start()
    stop.wait(8)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    Ingestor(db, files).sweep()
    with psycopg.connect(db, autocommit=True) as c:
        assert_exactly_once(c, files)


def test_reader_during_rebuilds_sees_whole_days(db: str, conn: psycopg.Connection, files: EventLake,
                                               ingestor: Ingestor) -> None:
    demo(db, 3_000, days=2)
    ingestor.sweep()
    expected = {date.fromisoformat(d): n for d, n in days_in_postgres(conn).items()}
    stop = threading.Event()
    seen: list[dict[date, int]] = []

    def read() -> None:
        while not stop.is_set():
            seen.append(dict(files.snapshot().query("SELECT event_date, count(*) FROM platform_events GROUP BY 1")))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(4):
            ingestor.rebuild(sorted(expected))
    finally:
        stop.set()
        reader.join(60)
    assert seen and all(s == expected for s in seen), [s for s in seen if s != expected][:3]

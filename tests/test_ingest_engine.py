"""The ingestion engine against a real PostgreSQL and real files: exactly once, whatever happens."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest

from tests.ingest_helpers import (
    days_in_postgres,
    demo,
    loadable_ids,
    sweep_in_subprocess,
    wait_until_lock_released,
    warehouse_days,
    warehouse_ids,
)
from tests.seed_queries import EVENT_PROCESSING_METRICS
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.local_store import LocalEventFiles


@pytest.fixture
def files(tmp_path: Path) -> LocalEventFiles:
    return LocalEventFiles(tmp_path / "warehouse")


@pytest.fixture
def ingestor(db: str, files: LocalEventFiles) -> Ingestor:
    return Ingestor(db, files, backoff_seconds=0.01)


def assert_exactly_once(conn: psycopg.Connection, files: LocalEventFiles) -> None:
    held = warehouse_ids(files)
    repeated = [i for i, n in Counter(held).items() if n > 1]
    assert not repeated, f"{len(repeated)} event(s) held more than once, e.g. {repeated[:3]}"
    expected = loadable_ids(conn)
    assert set(held) == expected, f"missing {len(expected - set(held))}, unexpected {len(set(held) - expected)}"
    assert warehouse_days(files) == days_in_postgres(conn)


def test_sweep_loads_every_event_once_enriched(db: str, conn: psycopg.Connection, files: LocalEventFiles,
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
                          LIMIT 1""").fetchone()
    event_id, role, age, metadata = row
    got = duckdb.execute("SELECT user_role, user_tenure_days, device_info, metadata::varchar, event_data::varchar "
                         "FROM read_parquet(?) WHERE event_id = ?", [files.glob(), event_id]).fetchone()
    assert got[0] == role and got[1] == age.days
    assert got[2]["device_type"] == "desktop" and got[2]["browser"] == "Chrome" and got[2]["os"] == "Windows"
    assert "ip_address" not in got[3] and "user_agent" not in got[3]  # personal data stays in PostgreSQL
    assert metadata["ip_address"]
    # every row's day directory is the UTC day of its timestamp
    misplaced = duckdb.execute("SELECT count(*) FROM read_parquet(?, hive_partitioning = true) WHERE "
                               "event_date <> (timezone('UTC', \"timestamp\"))::date", [files.glob()]).fetchone()[0]
    assert misplaced == 0
    # the bookkeeping: one sync-status row per day written, the seed's monitoring view says processed
    sync = conn.execute("SELECT count(*), sum(events_loaded) FROM warehouse_sync_status "
                        "WHERE warehouse = 'local' AND status = 'succeeded'").fetchone()
    assert sync == (len(outcome.days), outcome.events_loaded)
    statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses.get("pending", 0) == 0 and statuses["processed"] == outcome.events_loaded


def test_garbage_is_dead_lettered_or_enriched_with_nulls(db: str, conn: psycopg.Connection, files: LocalEventFiles,
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
    rows = {r[0]: r[1:] for r in duckdb.execute(
        "SELECT event_id, user_role, user_tenure_days, geo_location, device_info FROM read_parquet(?) "
        "WHERE event_id IN (?, ?, ?)", [files.glob(), str(garbage_ua), str(bad_ip), str(public)]).fetchall()}
    assert rows[str(garbage_ua)][0] is None and rows[str(garbage_ua)][1] is None  # unknown user: nulls
    assert rows[str(garbage_ua)][2]["country"] is None  # private address
    assert rows[str(garbage_ua)][3]["device_type"] == "other"
    assert rows[str(bad_ip)][2]["country"] is None
    assert rows[str(public)][2]["country"] == "US"
    assert_exactly_once(conn, files)
    # the seed's monitoring query tells the truth
    statuses = {s: c for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)}
    assert statuses == {"processed": outcome.events_loaded, "failed": outcome.events_failed}


def test_out_of_order_commits_are_never_skipped(db: str, conn: psycopg.Connection, files: LocalEventFiles,
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
    assert set(map(str, later)) <= set(warehouse_ids(files))
    assert_exactly_once(conn, files)


def test_late_event_lands_in_its_own_day(db: str, conn: psycopg.Connection, files: LocalEventFiles,
                                         ingestor: Ingestor) -> None:
    demo(db, 500, days=1)
    ingestor.sweep()
    old_day = (datetime.now(UTC) - timedelta(days=20)).replace(hour=12)
    with AnalyticsClient(db, user_id=uuid.uuid4()) as c:
        late = c.track("user.login", {"method": "github"}, timestamp=old_day)
    outcome = ingestor.sweep()
    assert outcome.days == {old_day.date(): 1}
    assert str(late) in {r[0] for r in duckdb.execute(
        "SELECT event_id FROM read_parquet(?)", [str(files.day_dir(old_day.date()) / "*.parquet")]).fetchall()}
    assert_exactly_once(conn, files)


def test_rebuild_is_idempotent_and_touches_only_its_days(db: str, conn: psycopg.Connection, files: LocalEventFiles,
                                                         ingestor: Ingestor) -> None:
    demo(db, 4_000, days=5)
    ingestor.sweep()
    days = files.days()
    assert len(days) >= 5
    target, others = days[1:4], [d for d in days if d not in days[1:4]]
    untouched = {p: p.read_bytes() for d in others for p in files.day_files(d)}

    first = ingestor.rebuild(target)
    snapshot = {p.name: p.read_bytes() for d in target for p in files.day_files(d)}
    second = ingestor.rebuild(target)
    assert first.events_loaded == second.events_loaded == sum(days_in_postgres(conn)[d.isoformat()] for d in target)
    assert {p.name: p.read_bytes() for d in target for p in files.day_files(d)} == snapshot  # identical files
    assert {p: p.read_bytes() for d in others for p in files.day_files(d)} == untouched
    assert_exactly_once(conn, files)


@pytest.mark.parametrize("crash_at", ["after_claim", "after_write", "after_publish"])
def test_sweep_killed_anywhere_then_rerun_is_exactly_once(db: str, conn: psycopg.Connection, files: LocalEventFiles,
                                                          ingestor: Ingestor, crash_at: str) -> None:
    demo(db, 2_000)
    killed = sweep_in_subprocess(db, files.root, crash_at=crash_at)
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 1
    demo(db, 300, seed=8)  # more traffic arrives meanwhile
    redo = ingestor.sweep()
    assert redo.redone and redo.status == "loaded"
    ingestor.sweep()  # the traffic that came after the killed sweep's range
    assert_exactly_once(conn, files)
    assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 0


def test_rebuild_killed_between_its_renames_is_finished_by_the_next_run(db: str, conn: psycopg.Connection,
                                                                        files: LocalEventFiles,
                                                                        ingestor: Ingestor) -> None:
    demo(db, 1_000, days=2)
    ingestor.sweep()
    day = files.days()[0]
    killed = sweep_in_subprocess(db, files.root, crash_at="after_swap_out", operation="rebuild", day=day.isoformat())
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert not files.day_dir(day).exists()  # the old day is out, the new one not yet in
    ingestor.sweep()  # any run of this warehouse finishes the swap first
    assert files.day_dir(day).exists()
    assert_exactly_once(conn, files)


def test_transient_failure_retries_with_backoff_then_dead_letters_then_replays(
        db: str, conn: psycopg.Connection, files: LocalEventFiles) -> None:
    demo(db, 1_000)
    waits: list[float] = []
    ingestor = Ingestor(db, files, backoff_seconds=0.5, sleep=waits.append)
    files.root.mkdir(parents=True)
    (files.root / "_staging").write_text("not a directory")  # the warehouse location cannot be written
    outcome = ingestor.sweep()
    assert outcome.status == "failed" and outcome.events_failed == 1_000
    assert len(waits) == 3 and all(0 <= w <= 30 for w in waits)  # three retries, exponential with jitter
    failed = conn.execute("SELECT count(*), min(retry_count), max(retry_count), min(error_message) "
                          "FROM platform_events WHERE processing_status = 'failed'").fetchone()
    assert failed[:3] == (1_000, 3, 3) and "transient failure after 3 retries" in failed[3]
    assert conn.execute("SELECT count(*) FROM warehouse_sync_status WHERE status = 'failed'").fetchone()[0] == 1
    assert warehouse_ids(files) == []

    (files.root / "_staging").unlink()  # the cause is fixed
    replayed = ingestor.replay()
    assert replayed.events_loaded == 1_000 and replayed.events_failed == 0
    not_processed = "SELECT count(*) FROM platform_events WHERE processing_status <> 'processed'"
    assert conn.execute(not_processed).fetchone()[0] == 0
    assert_exactly_once(conn, files)


def test_replay_killed_after_resolving_is_finished_by_the_next_run(db: str, conn: psycopg.Connection,
                                                                   files: LocalEventFiles) -> None:
    demo(db, 600)
    ingestor = Ingestor(db, files, backoff_seconds=0.0, sleep=lambda s: None)
    files.root.mkdir(parents=True)
    (files.root / "_staging").write_text("blocked")
    assert ingestor.sweep().status == "failed"
    (files.root / "_staging").unlink()
    killed = sweep_in_subprocess(db, files.root, crash_at="after_resolve", operation="replay")
    assert killed.returncode == -9, killed.stderr
    wait_until_lock_released(db)
    assert conn.execute("SELECT count(*) FROM warehouse_rebuild_queue").fetchone()[0] >= 1
    ingestor.sweep()  # drains the queue of days to rebuild
    assert conn.execute("SELECT count(*) FROM warehouse_rebuild_queue").fetchone()[0] == 0
    assert_exactly_once(conn, files)


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
                                                                   files: LocalEventFiles) -> None:
    demo(db, 3_000)
    ingestor = _ConnectionKillingIngestor(db, files, backoff_seconds=0.01, batch_bytes=64 * 1024)
    outcome = ingestor.sweep()
    assert ingestor.killed and outcome.status == "loaded" and outcome.retries >= 1
    with psycopg.connect(db, autocommit=True) as fresh:
        assert_exactly_once(fresh, files)


def test_concurrent_sweeps_rebuilds_and_producers_stay_exactly_once(db: str, files: LocalEventFiles) -> None:
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


def test_days_before_partitions_and_day_helpers(files: LocalEventFiles) -> None:
    assert files.days() == []
    assert files.day_dir(date(2026, 1, 2)).name == "event_date=2026-01-02"

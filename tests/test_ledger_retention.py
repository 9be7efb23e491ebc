"""The erasure ledger's own retention, against a real PostgreSQL and a real Dagster run: a request finished longer
ago than the retention loses its keyed hashes and keeps its audit trail; recent, running, failed and still-queued
requests keep theirs; a dry run only counts."""

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from dagster import DagsterInstance, Definitions
from psycopg.types.json import Jsonb

from workdev_pipeline.assets.governance import RETENTION_OP
from workdev_pipeline.assets.keys import RETENTION_RUNS
from workdev_pipeline.governance.common import GovernanceInputError, erasure_key, keyed_hash
from workdev_pipeline.governance.erasure import verify_erasures
from workdev_pipeline.governance.ledger import LEDGER_RETENTION_ENV, ledger_retention_days
from workdev_pipeline.governance.retention import apply_retention

AUDIT = "status, store_rows, dead_letter_rows, profile_rows, warehouse_rows, affected_days, requested_at, finished_at"


def request(conn: psycopg.Connection, now: datetime, status: str, age_days: float | None, *,
            queued: bool = False) -> int:
    """A ledger row as an erasure leaves it: hashes of a user id and an email, rows and days; finished
    ``age_days`` before ``now`` (None: not finished)."""
    key = erasure_key(conn)
    finished = None if age_days is None else now - timedelta(days=age_days)
    requested = (finished or now - timedelta(days=2000)) - timedelta(minutes=1)
    request_id = conn.execute(
        "INSERT INTO gdpr_erasure_requests (user_hash, requested_by, status, requested_at, finished_at, store_rows, "
        "dead_letter_rows, warehouse_rows, value_hashes, affected_days) VALUES (%s, 'test', %s, %s, %s, 12, 1, %s, "
        "%s, %s) RETURNING request_id",
        (keyed_hash(key, str(uuid.uuid4())), status, requested, finished, Jsonb({"lake": 12}),
         Jsonb({"email": [keyed_hash(key, f"{uuid.uuid4().hex[:8]}@example.com")]}),
         [requested.date()])).fetchone()[0]
    if queued:
        conn.execute("INSERT INTO warehouse_event_refresh (consumer, event_id, event_timestamp, request_id, reason) "
                     "VALUES ('lake', %s, %s, %s, 'erasure')", (uuid.uuid4(), requested, request_id))
    return request_id


def ledger(conn: psycopg.Connection) -> dict[int, tuple]:
    return {r[0]: r[1:] for r in conn.execute(
        f"SELECT request_id, user_hash IS NOT NULL, value_hashes <> '{{}}', hashes_expired_at IS NOT NULL, {AUDIT} "
        "FROM gdpr_erasure_requests ORDER BY request_id")}


def test_old_finished_requests_lose_their_hashes_and_keep_their_audit_trail(db: str, conn: psycopg.Connection,
                                                                            now: datetime,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEDGER_RETENTION_ENV, raising=False)
    old = request(conn, now, "erased", 1200)
    old_nothing = request(conn, now, "nothing_found", 1100)
    recent = request(conn, now, "erased", 1000)
    running = request(conn, now, "running", None)  # started 2,000 days ago, never finished
    failed = request(conn, now, "failed", None)
    queued = request(conn, now, "erased", 1500, queued=True)  # its warehouse work is still queued
    before = ledger(conn)
    assert all(row[:3] == (True, True, False) for row in before.values())

    dry = apply_retention(db, as_of=now, dry_run=True)
    assert dry.ledger_hashes_expired == 2
    assert ledger(conn) == before

    report = apply_retention(db, as_of=now)
    assert report.ledger_hashes_expired == 2
    after = ledger(conn)
    for request_id in (old, old_nothing):
        assert after[request_id][:3] == (False, False, True)  # user_hash and value_hashes gone, and when
        assert after[request_id][3:] == before[request_id][3:]  # status, rows, days, dates: the audit trail
    for request_id in (recent, running, failed, queued):
        assert after[request_id] == before[request_id]
    recorded = conn.execute("SELECT dry_run, ledger_hashes_expired FROM retention_runs ORDER BY retention_run_id")
    assert recorded.fetchall() == [(True, 2), (False, 2)]

    found = verify_erasures(db)  # the check reads the requests it can still verify, and copes with the others
    assert found.requests == 4 and found.users == 4
    assert [(t.request_id, t.kind) for t in found.traces] == [(queued, "queued")]  # its work is still queued

    assert apply_retention(db, as_of=now).ledger_hashes_expired == 0  # done once
    monkeypatch.setenv(LEDGER_RETENTION_ENV, "365")
    assert apply_retention(db, as_of=now).ledger_hashes_expired == 1  # the recent one, now past a shorter retention
    assert ledger(conn)[recent][:3] == (False, False, True)
    assert ledger(conn)[running] == before[running] and ledger(conn)[queued] == before[queued]


def test_hashes_go_only_from_finished_requests(conn: psycopg.Connection, now: datetime) -> None:
    running = request(conn, now, "running", None)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE gdpr_erasure_requests SET user_hash = NULL WHERE request_id = %s", (running,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE gdpr_erasure_requests SET user_hash = NULL, hashes_expired_at = now() "
                     "WHERE request_id = %s", (running,))


def test_the_retention_asset_reports_the_ledger_requests_expired(db: str, conn: psycopg.Connection,
                                                                 defs: Definitions, instance: DagsterInstance,
                                                                 now: datetime) -> None:
    request(conn, now, "erased", 2000)
    request(conn, now, "erased", 10)
    as_of = now - timedelta(minutes=1)
    result = defs.resolve_job_def("apply_retention").execute_in_process(instance=instance, run_config={
        "ops": {RETENTION_OP: {"config": {"as_of": as_of.isoformat()}}}})
    assert result.success
    [event] = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key == RETENTION_RUNS]
    assert event.metadata["ledger_hashes_expired"].value == 1


def test_ledger_retention_days() -> None:
    assert ledger_retention_days(30) == 30 and ledger_retention_days("1096") == 1096
    for bad in ("0", "-3", "three years"):
        with pytest.raises(GovernanceInputError, match=LEDGER_RETENTION_ENV):
            ledger_retention_days(bad)

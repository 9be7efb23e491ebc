"""AnalyticsClient against a real PostgreSQL: every method, its filters and paging, and bad input."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from tests.waiting import wait_until
from workdev_pipeline import limits
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.errors import (
    InvalidField,
    InvalidPayload,
    MissingRequiredKeys,
    PayloadTooDeep,
    PayloadTooLarge,
    QueryLimitExceeded,
    TimestampOutOfRange,
    UnknownEventType,
    UserRequired,
)
from workdev_pipeline.events import StagingCopy, new_event_id, prepare_batch


def count(conn: psycopg.Connection, where: str = "true", params: tuple = ()) -> int:
    return conn.execute(f"SELECT count(*) FROM platform_event_store WHERE {where}", params).fetchone()[0]


def staged_rows(client: AnalyticsClient) -> int:
    """Rows left in the batch table of the client's connection (0 when it has none)."""
    with client._pool.connection() as c:
        if c.execute("SELECT to_regclass('pg_temp.event_ingest_batch')").fetchone()[0] is None:
            return 0
        return c.execute("SELECT count(*) FROM pg_temp.event_ingest_batch").fetchone()[0]


def test_init_session_and_the_typed_helpers_store_what_the_seed_tracks(client: AnalyticsClient,
                                                                      conn: psycopg.Connection) -> None:
    session = client.init_session(user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", ip_address="81.2.69.142",
                                  platform="web", screen="1920x1080", language="en-GB", tz_name="Europe/London")
    again = AnalyticsClient.init_session(client, user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
                                         platform="web", screen="1920x1080", language="en-GB", tz_name="Europe/London")
    assert session.device_fingerprint == again.device_fingerprint and session.session_id != again.session_id
    project, proposal, milestone, review, developer = (uuid.uuid4() for _ in range(5))
    ids = {
        "project.created": client.track_project_created(project, {
            "title": "E-commerce Platform", "budget": 5000, "project_type": "fixed", "is_featured": False,
            "skills": ["React", "Node.js", "PostgreSQL"]}),
        "proposal.submitted": client.track_proposal_submitted(proposal, project, 4200),
        "milestone.approved": client.track_milestone_approved(milestone, project, Decimal("1500.50")),
        "review.posted": client.track_review_posted(review, {"reviewee_user_id": str(developer),
                                                             "reviewee_type": "developer", "rating_overall": 4.5}),
        "profile.viewed": client.track_profile_viewed(developer),
        "search.performed": client.track_search_performed("react developer", {"skills": ["React"]}, 15, 350),
        "user.login": client.track_user_login("github", True),
    }
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT event_type, event_id, user_id, session_id, source, entity_type, entity_id, event_data, metadata "
        "FROM platform_event_store")}
    assert set(rows) == set(ids)
    for event_type, event_id in ids.items():
        row = rows[event_type]
        assert row[:4] == (event_id, client.user_id, again.session_id, "web")
        assert row[7]["device_fingerprint"] == session.device_fingerprint
    assert rows["proposal.submitted"][4:6] == ("proposal", str(proposal))
    assert rows["proposal.submitted"][6] == {"project_id": str(project), "bid_amount": 4200}
    assert rows["milestone.approved"][6] == {"project_id": str(project), "amount": 1500.5}
    assert rows["user.login"][6] == {"method": "github", "mfa_used": True}
    assert rows["search.performed"][6]["results_count"] == 15


def test_track_errors_are_specific(client: AnalyticsClient, conn: psycopg.Connection, now: datetime) -> None:
    with pytest.raises(UnknownEventType, match=r"unknown event type 'project\.exploded'"):
        client.track("project.exploded", {})
    with pytest.raises(MissingRequiredKeys, match="lacks required keys: project_type"):
        client.track("project.created", {"title": "x", "budget": 1})
    with pytest.raises(InvalidPayload, match="event_data must be a JSON object"):
        client.track("user.login", ["method"])  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        client.track("user.login", {"method": "x", "when": object()})
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        client.track("user.login", {"method": "x", "score": float("nan")})
    with pytest.raises(PayloadTooLarge):
        client.track("user.login", {"method": "x", "pad": "é" * 20_000})
    with pytest.raises(InvalidField, match="user_id is not a valid UUID: 'user-to-delete'"):
        client.track("user.login", {"method": "x"}, user_id="user-to-delete")
    with pytest.raises(InvalidField, match="timestamp must be timezone-aware"):
        client.track("user.login", {"method": "x"}, timestamp=datetime(2026, 1, 1))
    with pytest.raises(TimestampOutOfRange, match="in the future"):
        client.track("user.login", {"method": "x"}, timestamp=now + timedelta(days=3))
    client.set_user(None)
    with pytest.raises(UserRequired):
        client.track_user_login("github")
    assert count(conn) == 0


def test_emit_many_is_all_or_nothing_and_names_the_bad_event(client: AnalyticsClient, conn: psycopg.Connection) -> None:
    good = [{"event_type": "user.login", "user_id": uuid.uuid4(), "event_data": {"method": "password"}}
            for _ in range(25_000)]
    bad = {"event_type": "payment.completed", "user_id": uuid.uuid4(), "event_data": {"amount": 10}}
    with pytest.raises(MissingRequiredKeys, match="event #21000 of the batch") as caught:
        client.emit_many([*good[:21000], bad, *good[21000:]], batch_size=10_000)
    assert caught.value.batch_position == 21_000
    assert count(conn) == 0
    with pytest.raises(InvalidField, match="event #3 of the batch: session_id is not a valid UUID"):
        client.emit_many([*good[:3], {**good[3], "session_id": "nope"}])
    with pytest.raises(InvalidField, match="unknown fields: colour"):
        client.emit_many([{**good[0], "colour": "red"}])
    with pytest.raises(InvalidPayload, match="is a str, not a mapping"):
        client.emit_many(["user.login"])  # type: ignore[list-item]
    assert count(conn) == 0
    # the client's session keeps nothing of a rejected batch
    assert staged_rows(client) == 0

    result = client.emit_many(iter(good), batch_size=7_000)
    assert (result.inserted, result.duplicates, len(set(result.event_ids))) == (25_000, 0, 25_000)
    assert count(conn) == 25_000
    assert staged_rows(client) == 0


def test_emit_many_generates_uuidv7_ids_in_the_order_of_the_events(client: AnalyticsClient,
                                                                    conn: psycopg.Connection) -> None:
    events = [{"event_type": "user.login", "user_id": uuid.uuid4(), "event_data": {"method": "password"}}
              for _ in range(2_500)]
    supplied = uuid.uuid4()
    before = datetime.now(UTC)
    first = client.emit_many(events[:1_200], batch_size=500).event_ids
    second = client.emit_many([*events[1_200:1_300], {**events[1_300], "event_id": supplied}, *events[1_301:]],
                              batch_size=700).event_ids
    after = datetime.now(UTC)
    assert second[100] == supplied
    generated = first + second[:100] + second[101:]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in generated)
    assert generated == sorted(generated) and len(set(generated)) == len(generated)  # strictly increasing
    millis = {i.int >> 80 for i in generated}
    assert int(before.timestamp() * 1000) <= min(millis) <= max(millis) <= int(after.timestamp() * 1000)
    assert count(conn) == 2_500
    stored = [r[0] for r in conn.execute("SELECT event_id FROM platform_events ORDER BY event_id")]
    assert stored == sorted([*generated, supplied])
    one_by_one = [new_event_id() for _ in range(1_000)]  # many within one millisecond: the counter goes on
    assert one_by_one == sorted(one_by_one) and len(set(one_by_one)) == 1_000


def test_emit_many_with_supplied_ids_never_writes_an_event_twice(client: AnalyticsClient,
                                                                 conn: psycopg.Connection, now: datetime) -> None:
    ids = [uuid.uuid4() for _ in range(3_000)]
    events = [{"event_id": i, "event_type": "user.logout", "user_id": uuid.uuid4(),
               "timestamp": now - timedelta(minutes=5)} for i in ids]
    first = client.emit_many(events, batch_size=1_000)
    assert (first.inserted, first.duplicates) == (3_000, 0)
    # a producer's retry: the same events, some re-stamped (a retry whose timestamp moved), plus new ones,
    # plus a duplicate inside the batch itself
    new = [{"event_id": uuid.uuid4(), "event_type": "user.logout", "user_id": uuid.uuid4()} for _ in range(500)]
    retry = [{**e, "timestamp": now} if n % 2 else e for n, e in enumerate(events)] + new + new[:1]
    second = client.emit_many(retry, batch_size=1_000)
    assert (second.inserted, second.duplicates) == (500, 3_001)
    assert count(conn) == 3_500
    assert conn.execute("SELECT count(DISTINCT event_id) FROM platform_event_store").fetchone()[0] == 3_500


def test_an_id_repeated_in_one_batch_is_stored_once_as_its_first_occurrence(client: AnalyticsClient,
                                                                            conn: psycopg.Connection,
                                                                            now: datetime) -> None:
    repeated, other = uuid.uuid4(), uuid.uuid4()
    first = {"event_id": repeated, "event_type": "user.logout", "user_id": uuid.uuid4(),
             "timestamp": now - timedelta(hours=1), "event_data": {"occurrence": 1}}
    # the same id again on other days: within the ±7-day window, and beyond it
    again = [{**first, "timestamp": now - timedelta(days=days), "event_data": {"occurrence": n}}
             for n, days in ((2, 2), (3, 10))]
    result = client.emit_many([first, {**first, "event_id": other}, *again])
    assert (result.inserted, result.duplicates) == (2, 2)
    assert result.event_ids == [repeated, other, repeated, repeated]
    assert conn.execute("SELECT \"timestamp\", event_data FROM platform_event_store WHERE event_id = %s",
                        (repeated,)).fetchall() == [(first["timestamp"], {"occurrence": 1})]
    # across the batches of one call, the window applies: 2 days apart is the same event
    late = {**first, "event_id": uuid.uuid4()}
    result = client.emit_many([late, {**late, "timestamp": now - timedelta(days=2)}], batch_size=1)
    assert (result.inserted, result.duplicates) == (1, 1)
    assert count(conn, "event_id = %s", (late["event_id"],)) == 1


# -- concurrent producers with their own ids ---------------------------------------------------------------
#
# Until migration 0017, supplied ids were serialised on 128 advisory-lock buckets (abs(hashtext(id::text) % 128))
# held to the end of the caller's transaction. These tests pick ids that shared a bucket then, so a return to
# any such lock shows as a lock wait -- which lock_timeout turns into a failure instead of a hang.

NO_WAITING = "-c lock_timeout=5s -c statement_timeout=60s"
WAITING_ALLOWED = "-c statement_timeout=120s"


def ids_by_old_bucket(conn: psycopg.Connection, buckets: int, per_bucket: int) -> list[list[uuid.UUID]]:
    """``per_bucket`` distinct random ids for each of ``buckets`` distinct old lock buckets."""
    candidates = [uuid.uuid4() for _ in range(4_000)]
    grouped: dict[int, list[uuid.UUID]] = {}
    for event_id, bucket in conn.execute("SELECT id, abs(hashtext(id::text) %% 128) FROM unnest(%s::uuid[]) id",
                                         (candidates,)):
        grouped.setdefault(bucket, []).append(event_id)
    full = [ids[:per_bucket] for ids in grouped.values() if len(ids) >= per_bucket]
    assert len(full) >= buckets
    return full[:buckets]


def logout(event_id: uuid.UUID, timestamp: datetime) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": "user.logout", "user_id": uuid.uuid4(), "timestamp": timestamp,
            "event_data": {}}


def emit_batch(conn: psycopg.Connection, events: list[Mapping[str, Any]]) -> int:
    """What ``emit_many`` does with one batch (COPY into the session's batch table, ``emit_staged_events``),
    inside the caller's open transaction; returns how many events were written."""
    with conn.cursor() as cur:
        StagingCopy(cur).write(prepare_batch(events, 0, None).rows)
        return cur.execute("SELECT emit_staged_events(true)").fetchone()[0]


@contextmanager
def open_transactions(db: str, options: str, n: int) -> Iterator[list[psycopg.Connection]]:
    conns = [psycopg.connect(db, options=options) for _ in range(n)]
    try:
        yield conns
    finally:
        for c in conns:
            c.close()


def waiting_for(conn: psycopg.Connection, waiter: psycopg.Connection) -> list[tuple[str, int]]:
    """The locks ``waiter``'s session is waiting for, as (locktype, pid holding it)."""
    return conn.execute("SELECT l.locktype, unnest(pg_blocking_pids(l.pid)) FROM pg_locks l "
                        "WHERE l.pid = %s AND NOT l.granted", (waiter.info.backend_pid,)).fetchall()


def test_producers_with_their_own_ids_never_wait_for_each_others_open_transactions(
        db: str, conn: psycopg.Connection, now: datetime) -> None:
    (x, x2, z, v), (y, y2, w, _) = ids_by_old_bucket(conn, buckets=2, per_bucket=4)
    ts = now - timedelta(minutes=5)
    with open_transactions(db, NO_WAITING, 3) as (held, a, b):
        # a transaction left open after emitting one event with its own id (z shared x's bucket)
        held.execute("SELECT emit_platform_event('user.logout', %s, p_event_id => %s)", (uuid.uuid4(), z))
        # producer A emits x then y, producer B y2 then x2, each a statement at a time in its own open
        # transaction: the buckets were taken in crossed order (A holds x's, B y's, then each wants the other's)
        assert emit_batch(a, [logout(x, ts)]) == 1
        assert emit_batch(b, [logout(y2, ts)]) == 1
        with ThreadPoolExecutor(2) as pool:
            crossed = [pool.submit(emit_batch, a, [logout(y, ts)]), pool.submit(emit_batch, b, [logout(x2, ts)])]
            assert [f.result() for f in crossed] == [1, 1]
        # and a client's emit_many and track beside all three open transactions (w and v shared their buckets)
        with ConnectionPool(db, min_size=1, max_size=1, kwargs={"autocommit": True, "options": NO_WAITING}) as pool, \
                AnalyticsClient(pool=pool) as producer:
            assert producer.emit_many([logout(w, ts), logout(uuid.uuid4(), ts)]).inserted == 2
            assert producer.track("user.logout", event_id=v, user_id=uuid.uuid4()) == v
        for c in (a, b, held):
            c.commit()
    for event_id in (x, y, x2, y2, z, w, v):
        assert count(conn, "event_id = %s", (event_id,)) == 1


def test_two_open_transactions_sending_the_same_ids_wait_for_that_id_only_then_skip_it(
        db: str, conn: psycopg.Connection, now: datetime) -> None:
    """PostgreSQL's unique index: the second inserter of an id waits for the first's commit (of that id only),
    then finds it stored. Batches insert in id order, so crossed orders of the same ids never deadlock."""
    x, y = sorted(uuid.uuid4() for _ in range(2))
    day = datetime.combine(now.date() - timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    first, later = day + timedelta(hours=1), day + timedelta(hours=2)  # the same UTC day, other timestamps
    with open_transactions(db, WAITING_ALLOWED, 2) as (a, b), ThreadPoolExecutor(1) as pool:
        assert emit_batch(a, [logout(x, first), logout(y, first)]) == 2
        fresh = uuid.uuid4()
        second = pool.submit(emit_batch, b, [logout(y, later), logout(x, later), logout(fresh, later)])
        wait_until(lambda: waiting_for(conn, b), "B to wait for A", timeout=120, interval=0.02)
        assert waiting_for(conn, b) == [("transactionid", a.info.backend_pid)]
        a.commit()
        assert second.result() == 1  # only the fresh id: x and y are A's
        b.commit()
    rows = conn.execute("SELECT event_id, \"timestamp\" FROM platform_event_store ORDER BY event_id").fetchall()
    assert sorted(rows) == sorted([(x, first), (y, first), (fresh, later)])

    # crossed orders of the same ids, both behind a third transaction holding the first of them: whichever
    # goes first when it rolls back, the other waits for it and skips -- no deadlock, one row per id
    for _ in range(5):
        x, y = sorted(uuid.uuid4() for _ in range(2))
        with open_transactions(db, WAITING_ALLOWED, 3) as (held, a, b), ThreadPoolExecutor(2) as pool:
            assert emit_batch(held, [logout(x, first)]) == 1
            runs = [pool.submit(emit_batch, a, [logout(x, first), logout(y, first)]),
                    pool.submit(emit_batch, b, [logout(y, later), logout(x, later)])]
            wait_until(lambda: (waiting_for(conn, a), waiting_for(conn, b)), "A and B to wait", timeout=120,
                       until=all, interval=0.02)
            held.rollback()
            done = []
            for run in as_completed(runs):  # the winner commits, then the other sees its rows
                done.append(run.result())
                (a, b)[runs.index(run)].commit()
            assert sorted(done) == [0, 2]
        assert count(conn, "event_id IN (%s, %s)", (x, y)) == 2


# -- the plain insert's subtransactions (migration 0021) ------------------------------------------------------
#
# A supplied batch is first inserted plainly in a subtransaction; one that wrote keeps its own XID until the
# transaction ends, and it is the xmin of the rows it wrote. Rows written on the ON CONFLICT path carry the
# transaction's own XID. So grouping a transaction's rows by xmin shows which path each batch took.


def rows_by_xmin(conn: psycopg.Connection) -> dict[int, int]:
    """How many stored rows each inserting (sub)transaction wrote."""
    return dict(conn.execute("SELECT xmin::text::bigint, count(*) FROM platform_event_store GROUP BY 1"))


def test_a_transaction_inserts_at_most_the_limit_of_batches_in_subtransactions_then_falls_back(
        db: str, conn: psycopg.Connection, now: datetime) -> None:
    """Past emit_plain_insert_limit() batches in one transaction every batch takes the ON CONFLICT path (more
    subtransactions with XIDs would overflow PostgreSQL's 64-entry subtransaction cache), and every event is
    still stored once: re-sends of the previous batch and repeats inside a batch are skipped on both paths."""
    limit = conn.execute("SELECT emit_plain_insert_limit()").fetchone()[0]
    assert limit == 32
    ts = now - timedelta(minutes=5)
    batches = [[logout(uuid.uuid4(), ts) for _ in range(3)] for _ in range(limit + 8)]
    with psycopg.connect(db) as producer:
        top = producer.execute("SELECT pg_current_xact_id()::xid::text::bigint").fetchone()[0]
        previous: list[dict[str, Any]] = []
        for batch in batches:
            # a re-send of the previous batch's first event (2 days later: the ±7-day probe) and a repeat
            repeats = [{**previous[0], "timestamp": ts - timedelta(days=2)}] if previous else []
            assert emit_batch(producer, [*batch, *repeats, {**batch[1], "event_data": {"again": True}}]) == 3
            previous = batch
        assert producer.execute("SELECT emit_plain_inserts_used()").fetchone()[0] == limit
        producer.commit()
    written = rows_by_xmin(conn)
    assert written.pop(top) == 3 * 8  # the batches past the limit, on the transaction's own XID
    assert sorted(written.values()) == [3] * limit  # one subtransaction per batch up to the limit
    assert count(conn) == 3 * len(batches)
    assert conn.execute("SELECT count(DISTINCT event_id) FROM platform_event_store").fetchone()[0] == count(conn)
    assert count(conn, "event_data ? 'again'") == 0


@pytest.mark.parametrize("tampered", ["-1000000", "-1", "1e9", "2147483648", "seven", " 0"])
def test_a_plain_insert_count_the_caller_set_sends_its_batches_to_on_conflict(
        db: str, conn: psycopg.Connection, now: datetime, tampered: str) -> None:
    """workdev.emit_plain_inserts is the caller's to set: a value emit_staged_events could not have written
    reads as the limit reached, never as more room (nor as an error)."""
    ts = now - timedelta(minutes=5)
    with psycopg.connect(db) as producer:
        top = producer.execute("SELECT pg_current_xact_id()::xid::text::bigint").fetchone()[0]
        producer.execute("SELECT set_config('workdev.emit_plain_inserts', %s, true)", (tampered,))
        for _ in range(3):
            assert emit_batch(producer, [logout(uuid.uuid4(), ts) for _ in range(2)]) == 2
        producer.commit()
    assert rows_by_xmin(conn) == {top: 6}


def test_query_events_filters_pages_and_counts(client: AnalyticsClient, now: datetime) -> None:
    alice, bob = uuid.uuid4(), uuid.uuid4()
    base = now - timedelta(days=2)
    events = [{"event_type": t, "user_id": u, "event_data": d, "timestamp": base + timedelta(minutes=i),
               "metadata": {"ip_address": "8.8.8.8", "user_agent": "curl/8", "platform": "web"}}
              for i, (t, u, d) in enumerate(
                  [("user.login", alice, {"method": "github"})] * 30
                  + [("user.logout", bob, {})] * 20
                  + [("search.performed", None, {"query": "x", "results_count": 1, "search_time_ms": 3})] * 10)]
    client.emit_many(events)

    everything = client.query_events(start_date=base, end_date=now, limit=1000)
    assert everything.total == 60 and len(everything.events) == 60
    stamps = [e["timestamp"] for e in everything.events]
    assert stamps == sorted(stamps, reverse=True)
    assert all("ip_address" not in e["metadata"] and "user_agent" not in e["metadata"] for e in everything.events)
    assert everything.events[0]["metadata"] == {"platform": "web"}

    logins = client.query_events(start_date=base, end_date=now, event_types=["user.login"], limit=7, offset=28)
    assert (logins.total, len(logins.events)) == (30, 2)
    by_bob = client.query_events(start_date=base.isoformat(), end_date=now.isoformat(), user_id=str(bob))
    assert by_bob.total == 20 and {e["user_id"] for e in by_bob.events} == {bob}
    window = client.query_events(start_date=base + timedelta(minutes=10), end_date=base + timedelta(minutes=20))
    assert window.total == 10
    days = client.query_events(start_date=base.date(), end_date=now.date())  # a date end includes its whole day
    assert days.total == 60
    past_the_end = client.query_events(start_date=base, end_date=now, offset=500)
    assert (past_the_end.total, past_the_end.events) == (60, [])


@pytest.mark.parametrize("hostile", ["'; DROP TABLE platform_event_store; --", "user.login' OR '1'='1", "%", "\\"])
def test_hostile_filter_strings_are_data(client: AnalyticsClient, conn: psycopg.Connection, hostile: str,
                                         now: datetime) -> None:
    client.track_user_login("github")
    page = client.query_events(start_date=now - timedelta(days=1), end_date=now + timedelta(minutes=1),
                               event_types=[hostile])
    assert (page.total, page.events) == (0, [])
    assert client.query_aggregations(aggregation_type="daily", start_date=now.date(), end_date=now.date(),
                                     event_types=[hostile]).rows == []
    assert count(conn) == 1


def test_query_limits_are_enforced(client: AnalyticsClient, now: datetime) -> None:
    with pytest.raises(QueryLimitExceeded, match="longer than 93 days"):
        client.query_events(start_date="2025-01-01", end_date="2025-12-31")
    with pytest.raises(QueryLimitExceeded, match="limit must be an integer between 1 and 1000, got 5000"):
        client.query_events(start_date=now - timedelta(days=1), end_date=now, limit=5000)
    with pytest.raises(QueryLimitExceeded, match="offset must be an integer between 0 and 100000"):
        client.query_events(start_date=now - timedelta(days=1), end_date=now, offset=-1)
    with pytest.raises(QueryLimitExceeded, match="is not after start"):
        client.query_events(start_date=now, end_date=now - timedelta(days=1))
    with pytest.raises(InvalidField, match="not an ISO-8601"):
        client.query_events(start_date="last tuesday", end_date=now)
    with pytest.raises(QueryLimitExceeded, match="aggregation_type must be hourly, daily or weekly"):
        client.query_aggregations(aggregation_type="yearly", start_date="2026-01-01", end_date="2026-01-02")
    with pytest.raises(QueryLimitExceeded, match="unknown event category 'finance'"):
        client.query_aggregations(aggregation_type="daily", start_date="2026-01-01", end_date="2026-01-02",
                                  event_category="finance")


def test_query_aggregations_returns_rows_and_exact_range_totals(client: AnalyticsClient,
                                                                conn: psycopg.Connection, now: datetime) -> None:
    day1 = (now - timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
    day2 = day1 + timedelta(days=1)
    users = [uuid.uuid4() for _ in range(5)]
    # users 0-2 pay on day 1, users 2-4 on day 2: 3 + 3 per day, but 5 distinct over both days
    events = [{"event_type": "payment.completed", "user_id": u, "timestamp": ts,
               "event_data": {"amount": 100, "currency": "USD"}}
              for ts, group in ((day1, users[:3]), (day2, users[2:])) for u in group]
    events.append({"event_type": "user.login", "user_id": users[0], "timestamp": day1, "event_data": {"method": "sso"}})
    client.emit_many(events)
    for ts in (day1, day2):
        # rows as the aggregation assets write them
        conn.execute(
            "INSERT INTO event_aggregations (aggregation_type, period_start, period_end, event_type, event_category,"
            " total_events, unique_users, unique_sessions, amount_sum) VALUES"
            " ('daily', %s, %s, 'payment.completed', 'transaction', 3, 3, 0, 300)",
            (ts.replace(hour=0), ts.replace(hour=0) + timedelta(days=1)))
    result = client.query_aggregations(aggregation_type="daily", event_category="transaction",
                                       start_date=day1.date(), end_date=day2.date())
    assert [(r["period_start"].date(), r["total_events"], r["amount_sum"]) for r in result.rows] == [
        (day1.date(), 3, 300), (day2.date(), 3, 300)]
    assert (result.total_events, result.unique_users) == (6, 5)
    only_day2 = client.query_aggregations(aggregation_type="daily", start_date=day2.date().isoformat(),
                                          end_date=day2.date().isoformat())
    assert len(only_day2.rows) == 1 and (only_day2.total_events, only_day2.unique_users) == (3, 3)


def test_dashboard_metrics_match_direct_counts_and_respect_the_ttl(client: AnalyticsClient,
                                                                   conn: psycopg.Connection, now: datetime) -> None:
    if now.hour == 0 and now.minute < 15:
        pytest.skip("'today' and 'the last hour' straddle midnight UTC right now")
    recent = now - timedelta(minutes=10)
    people = [uuid.uuid4() for _ in range(4)]
    client.emit_many(
        [{"event_type": "project.created", "user_id": people[0], "timestamp": recent,
          "event_data": {"title": "t", "budget": 10, "project_type": "fixed"}}]
        + [{"event_type": "proposal.submitted", "user_id": p, "timestamp": recent,
            "event_data": {"project_id": str(uuid.uuid4()), "bid_amount": 5}} for p in people[1:]]
        + [{"event_type": "payment.completed", "user_id": people[0], "timestamp": recent,
            "event_data": {"amount": a, "currency": "USD"}} for a in (100, 250.5)]
        + [{"event_type": "search.performed", "timestamp": recent,
            "event_data": {"query": "q", "results_count": 1, "search_time_ms": ms}} for ms in (100, 300)]
        + [{"event_type": "user.login", "user_id": people[3], "timestamp": now - timedelta(hours=3),
            "event_data": {"method": "github"}}])
    metrics = client.get_dashboard_metrics()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    direct = conn.execute(
        "SELECT count(DISTINCT user_id) FILTER (WHERE \"timestamp\" >= now() - interval '1 hour'),"
        " count(*) FILTER (WHERE event_type = 'user.login' AND \"timestamp\" >= %s)"
        " FROM platform_event_store", (today,)).fetchone()
    assert metrics.active_users_last_hour == direct[0] == 4
    assert metrics.projects_created_today == 1
    assert metrics.proposals_submitted_today == 3
    assert (metrics.payments_completed_today, metrics.payments_amount_today) == (2, Decimal("350.5"))
    assert (metrics.searches_today, metrics.avg_search_time_ms_today) == (2, 200)
    assert metrics.logins_today == direct[1]
    assert metrics.pending_events == 9 and metrics.failed_events == 0
    assert metrics.expires_at > metrics.calculated_at

    # still valid: served from the cache even though a new event arrived
    client.track_project_created(uuid.uuid4(), {"title": "t2", "budget": 1, "project_type": "hourly"})
    assert client.get_dashboard_metrics().projects_created_today == 1
    # expired: recomputed
    conn.execute("UPDATE platform_metrics_realtime SET calculated_at = now() - interval '10 minutes',"
                 " expires_at = now() - interval '1 second'")
    assert conn.execute("SELECT cleanup_expired_metrics()").fetchone()[0] == 13
    assert client.get_dashboard_metrics().projects_created_today == 2
    with pytest.raises(AttributeError, match="no dashboard metric 'nonsense'"):
        _ = metrics.nonsense


def test_query_dates_accept_dates_strings_and_datetimes_only(client: AnalyticsClient, now: datetime) -> None:
    assert client.query_events(start_date=date.today(), end_date=date.today()).total == 0
    with pytest.raises(InvalidField, match="timezone-aware"):
        client.query_events(start_date=datetime(2026, 1, 1), end_date=now)
    with pytest.raises(InvalidField, match="pass a date, not a datetime"):
        client.query_aggregations(aggregation_type="daily", start_date=now, end_date=now.date())


# -- bounded input ---------------------------------------------------------------------------------------------


def nested(levels: int) -> dict:
    """A payload ``levels`` deep (itself level 1), objects and lists alternating below."""
    inner: object = 1
    for level in range(levels - 1):
        inner = [inner] if level % 2 else {"k": inner}
    return {"method": "github", "deep": inner}


def test_payloads_deeper_than_32_levels_are_refused_at_every_client_entry_point(client: AnalyticsClient,
                                                                                conn: psycopg.Connection) -> None:
    assert client.track("user.login", nested(32), metadata=nested(32))
    for levels in (33, 300, 1_000):  # 33: the database refuses it; 1,000: the client, before the encoder recurses
        for field in ("event_data", "metadata"):
            payload = {"event_data": nested(levels)} if field == "event_data" else {"metadata": nested(levels)}
            with pytest.raises(PayloadTooDeep, match=f"^{field} is nested deeper than 32 levels$") as caught:
                client.track("user.login", payload.get("event_data", {"method": "x"}), metadata=payload.get("metadata"))
            assert isinstance(caught.value, InvalidPayload) and caught.value.sqlstate == "WD011"
            good = {"event_type": "user.login", "user_id": uuid.uuid4(), "event_data": {"method": "x"}}
            with pytest.raises(PayloadTooDeep, match=f"^event #2 of the batch: {field} is nested deeper") as caught:
                client.emit_many([good, good | {"event_id": uuid.uuid4()}, good | payload, good], batch_size=2)
            assert caught.value.batch_position == 2
    assert count(conn) == 1


BAD_PAGES = [(0, 0), (-1, 0), (1001, 0), (2**31, 0), (None, 0), (10, -1), (10, 100_001), (10, 2**31),
             (10, None), (-(2**40), 0)]


@pytest.mark.parametrize(("limit", "offset"), BAD_PAGES)
def test_out_of_range_pages_are_refused_by_the_client_before_calling_and_by_sql_alike(
        db: str, conn: psycopg.Connection, limit: int | None, offset: int | None, now: datetime) -> None:
    window = {"start_date": now - timedelta(hours=1), "end_date": now}
    unopened = ConnectionPool(db, open=False)  # the client never connects: a call would raise PoolClosed
    with AnalyticsClient(pool=unopened) as offline, pytest.raises(QueryLimitExceeded) as by_client:
        offline.query_events(**window, limit=limit, offset=offset)
    with pytest.raises(psycopg.Error) as by_sql:
        conn.execute("SELECT * FROM query_platform_events(%s, %s, NULL, NULL, %s, %s)",
                     (window["start_date"], window["end_date"], limit, offset))
    assert by_sql.value.sqlstate == "WD010"
    assert str(by_client.value) == by_sql.value.diag.message_primary
    assert str(by_client.value).startswith("limit must be" if offset == 0 else "offset must be")


@pytest.mark.parametrize("value", [2**63, 1.5, "10", True])
def test_what_sql_could_not_even_receive_is_refused_by_the_client(client: AnalyticsClient, value: object,
                                                                  now: datetime) -> None:
    with pytest.raises(QueryLimitExceeded, match=r"^limit must be an integer between 1 and 1000, got "):
        client.query_events(start_date=now - timedelta(hours=1), end_date=now, limit=value)  # type: ignore[arg-type]


def test_the_clients_limits_are_the_databases(conn: psycopg.Connection) -> None:
    row = conn.execute("SELECT * FROM event_query_limits()").fetchone()
    assert row == (limits.MAX_PAYLOAD_DEPTH, limits.MAX_PAGE_SIZE, limits.MAX_OFFSET, limits.MAX_RANGE_DAYS,
                   limits.MAX_AGGREGATION_ROWS, limits.MAX_AGGREGATION_DAYS)


def insert_rows(conn: psycopg.Connection, aggregation_type: str, first: datetime, periods: int) -> None:
    """event_aggregations rows for every event type over ``periods`` periods from ``first``, 2 events each."""
    step = {"hourly": "1 hour", "daily": "1 day"}[aggregation_type]
    conn.execute(
        "INSERT INTO event_aggregations (aggregation_type, period_start, period_end, event_type, event_category,"
        " total_events, unique_users, unique_sessions)"
        " SELECT %s, p, p + %s::interval, s.event_type, s.event_category, 2, 1, 1"
        " FROM generate_series(%s::timestamptz, %s::timestamptz + (%s - 1) * %s::interval, %s::interval) p,"
        " event_schemas s", (aggregation_type, step, first, first, periods, step, step))


def test_a_year_of_daily_rows_is_fine_and_rows_returned_set_the_limit(client: AnalyticsClient,
                                                                      conn: psycopg.Connection, now: datetime) -> None:
    today = now.date()
    year_ago = today - timedelta(days=365)
    insert_rows(conn, "daily", datetime.combine(year_ago, datetime.min.time(), tzinfo=UTC), 365)
    year = client.query_aggregations(aggregation_type="daily", start_date=year_ago, end_date=today)
    assert len(year.rows) == 365 * 32 == 11_680
    assert year.total_events == sum(r["total_events"] for r in year.rows) == 2 * 11_680

    first_hour = datetime.combine(today - timedelta(days=70), datetime.min.time(), tzinfo=UTC)
    insert_rows(conn, "hourly", first_hour, 66 * 24)  # 50,688 rows
    message = r"^the range holds more than 50000 aggregation rows: narrow it"
    with pytest.raises(QueryLimitExceeded, match=message):
        client.query_aggregations(aggregation_type="hourly", start_date=first_hour.date(), end_date=today)
    for function in ("query_event_aggregations", "event_aggregation_totals"):
        with pytest.raises(psycopg.Error, match=message) as caught:
            conn.execute(f"SELECT * FROM {function}('hourly', %s, %s)", (first_hour.date(), today))
        assert caught.value.sqlstate == "WD010"
    narrowed = client.query_aggregations(aggregation_type="hourly", start_date=first_hour.date(), end_date=today,
                                         event_category="transaction")
    assert narrowed.total_events == sum(r["total_events"] for r in narrowed.rows) > 0
    with pytest.raises(QueryLimitExceeded, match="is longer than 1100 days"):
        client.query_aggregations(aggregation_type="weekly", start_date=today - timedelta(days=1100), end_date=today)


def test_totals_count_what_the_rows_count_even_with_a_dead_lettered_event(client: AnalyticsClient,
                                                                         conn: psycopg.Connection,
                                                                         now: datetime) -> None:
    yesterday = (now - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    day = yesterday.replace(hour=0)
    users = [uuid.uuid4() for _ in range(4)]
    paid = client.emit_many([{"event_type": "payment.completed", "user_id": u, "timestamp": yesterday,
                              "event_data": {"amount": 10, "currency": "USD"}} for u in users[:3]]).event_ids
    client.emit_many([{"event_type": "payment.completed", "user_id": users[3],  # today: no row yet
                       "event_data": {"amount": 10, "currency": "USD"}}])
    conn.execute("INSERT INTO event_failures (event_id, event_timestamp, event_type, error_kind, error_message)"
                 " VALUES (%s, %s, 'payment.completed', 'validation', 'bad')", (paid[2], yesterday))
    # the row as the aggregation computes it from the lake, which the dead-lettered event never reached
    conn.execute("INSERT INTO event_aggregations (aggregation_type, period_start, period_end, event_type,"
                 " event_category, total_events, unique_users, unique_sessions, amount_sum)"
                 " VALUES ('daily', %s, %s, 'payment.completed', 'transaction', 2, 2, 0, 20)",
                 (day, day + timedelta(days=1)))
    result = client.query_aggregations(aggregation_type="daily", start_date=day.date(), end_date=now.date())
    assert [r["total_events"] for r in result.rows] == [2]
    assert (result.total_events, result.unique_users) == (2, 2)


def test_an_odd_stored_event_never_breaks_another_users_query(db: str, conn: psycopg.Connection, login_role,
                                                               now: datetime) -> None:
    odd_user, other = uuid.uuid4(), uuid.uuid4()
    deep = "1"
    for _ in range(1_000):
        deep = f'{{"a": {deep}}}'
    # bypassing emission, as only a superuser could: nested 1,000 levels, in event_data and in metadata
    for data, metadata in ((deep, "{}"), ('{"method": "x"}', deep)):
        conn.execute("INSERT INTO platform_event_store (event_id, event_type, event_category, user_id, event_data,"
                     " metadata, \"timestamp\") VALUES (gen_random_uuid(), 'user.login', 'user_activity', %s,"
                     " %s::jsonb, %s::jsonb, now())", (odd_user, data, metadata))
    with AnalyticsClient(db, user_id=other) as emitter:
        emitter.track_user_login("github")
    window = {"start_date": now - timedelta(hours=1), "end_date": now + timedelta(hours=1)}

    with AnalyticsClient(db) as admin:
        page = admin.query_events(**window)
    assert page.total == 3
    by_user = {(e["user_id"], e["event_data"] is None): e for e in page.events}
    assert by_user[(other, False)]["payload_error"] is None
    odd = sorted((e["payload_error"], e["event_data"], e["metadata"]) for e in page.events if e["user_id"] == odd_user)
    assert odd == [("event_data is nested deeper than 32 levels: not returned", None, {}),
                   ("metadata is nested deeper than 32 levels: not returned", {"method": "x"}, None)]

    with AnalyticsClient(login_role("workdev_app"), acting_user_id=other) as app:
        mine = app.query_events(**window)
        assert (mine.total, mine.events[0]["event_data"], mine.events[0]["payload_error"]) == (
            1, {"method": "github", "mfa_used": False}, None)
        assert app.acting_as(odd_user).query_events(**window).total == 2
    with psycopg.connect(login_role("workdev_analyst")) as analyst:
        assert analyst.execute("SELECT count(*), count(payload_error) FROM analyst_events").fetchone() == (3, 2)


def test_the_client_decodes_each_payload_defensively(db: str, conn: psycopg.Connection, now: datetime) -> None:
    """Were a server to return an odd payload after all (here: the depth guard replaced), only its row says so."""
    conn.execute("CREATE OR REPLACE FUNCTION readable_payload(p_value jsonb, p_key bytea) RETURNS jsonb"
                 " LANGUAGE sql IMMUTABLE AS 'SELECT p_value'")
    deep = "1"
    for _ in range(2_000):
        deep = f"[{deep}]"
    conn.execute("INSERT INTO platform_event_store (event_id, event_type, event_category, event_data, metadata,"
                 " \"timestamp\") VALUES (gen_random_uuid(), 'user.login', 'user_activity',"
                 " jsonb_build_object('d', %s::jsonb), '{}', now())", (deep,))
    with AnalyticsClient(db, user_id=uuid.uuid4()) as client:
        client.track_user_login("github")
        page = client.query_events(start_date=now - timedelta(hours=1), end_date=now + timedelta(hours=1))
    fine, odd = sorted(page.events, key=lambda e: e["event_data"] is None)
    assert fine["event_data"] == {"method": "github", "mfa_used": False} and fine["payload_error"] is None
    assert odd["event_data"] is None and "event_data could not be decoded: " in odd["payload_error"]

"""AnalyticsClient against a real PostgreSQL: every method, its filters and paging, and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.errors import (
    InvalidField,
    InvalidPayload,
    MissingRequiredKeys,
    PayloadTooLarge,
    QueryLimitExceeded,
    TimestampOutOfRange,
    UnknownEventType,
    UserRequired,
)


@pytest.fixture
def now() -> datetime:
    """The clock, read when the test runs."""
    return datetime.now(UTC)


def count(conn: psycopg.Connection, where: str = "true", params: tuple = ()) -> int:
    return conn.execute(f"SELECT count(*) FROM platform_event_store WHERE {where}", params).fetchone()[0]


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
    # the staging table keeps nothing of a rejected batch
    assert conn.execute("SELECT count(*) FROM event_ingest_staging").fetchone()[0] == 0

    result = client.emit_many(iter(good), batch_size=7_000)
    assert (result.inserted, result.duplicates, len(set(result.event_ids))) == (25_000, 0, 25_000)
    assert count(conn) == 25_000
    assert conn.execute("SELECT count(*) FROM event_ingest_staging").fetchone()[0] == 0


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

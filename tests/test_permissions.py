"""Least privilege: what each role can and cannot do, connected as a real login of that role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from workdev_pipeline.client import AnalyticsClient

NOW = datetime.now(UTC)
FORBIDDEN_FOR_APP = [
    "SELECT * FROM platform_event_store",
    "SELECT * FROM platform_events",
    "SELECT * FROM platform_event_store_default",
    "UPDATE platform_events SET processing_status = 'processed'",
    "UPDATE platform_event_store SET user_id = NULL",
    "DELETE FROM platform_event_store",
    "DELETE FROM platform_events",
    "INSERT INTO platform_event_store (event_id, event_type, event_category, \"timestamp\")"
    " VALUES (gen_random_uuid(), 'user.login', 'user_activity', now())",
    "SELECT * FROM event_ingest_staging",
    "SELECT * FROM event_failures",
    "UPDATE pipeline_watermarks SET tx_watermark = 0",
    "DELETE FROM warehouse_sync_status",
    "INSERT INTO event_aggregations (aggregation_type, period_start, period_end, event_type, event_category,"
    " total_events, unique_users, unique_sessions)"
    " VALUES ('daily', now(), now() + interval '1 day', 'x', 'y', 1, 1, 1)",
    "SELECT * FROM user_profiles",
    "UPDATE event_schemas SET active = false",
    "SELECT json_schema FROM event_schemas",
    "SELECT ensure_event_partitions(now(), now())",
    "SELECT refresh_realtime_metrics()",
    "SELECT cleanup_expired_metrics()",
]


@pytest.fixture
def app_url(login_role) -> str:
    return login_role("workdev_app")


@pytest.mark.parametrize("statement", FORBIDDEN_FOR_APP)
def test_the_application_role_cannot_read_or_change_events_directly(app_url: str, client: AnalyticsClient,
                                                                    statement: str) -> None:
    client.track_user_login("github")
    with psycopg.connect(app_url, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_application_role_emits_and_reads_through_the_functions(app_url: str, conn: psycopg.Connection) -> None:
    user = uuid.uuid4()
    with AnalyticsClient(app_url, user_id=user) as app:
        app.init_session(user_agent="Mozilla/5.0", ip_address="8.8.8.8")
        one = app.track_user_login("github", True)
        many = app.emit_many([{"event_type": "user.logout", "user_id": user} for _ in range(50)]).event_ids
        page = app.query_events(start_date=NOW - timedelta(hours=1), end_date=NOW + timedelta(hours=1), user_id=user)
        assert page.total == 51 and one in {e["event_id"] for e in page.events}
        assert app.get_dashboard_metrics().logins_today >= 1
        assert app.query_aggregations(aggregation_type="hourly", start_date=NOW.date(), end_date=NOW.date()).rows == []
    assert conn.execute("SELECT count(*) FROM platform_event_store WHERE event_id = ANY(%s)",
                        ([one, *many],)).fetchone()[0] == 51
    with psycopg.connect(app_url) as app_conn:  # the catalog's public columns are readable, for type pickers
        assert app_conn.execute("SELECT count(*) FROM event_schemas WHERE active").fetchone()[0] > 0


def test_the_analyst_reads_everything_and_changes_nothing(login_role, client: AnalyticsClient) -> None:
    client.track_user_login("github")
    with psycopg.connect(login_role("workdev_analyst"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM platform_events").fetchone()[0] == 1
        conn.execute("SELECT * FROM warehouse_sync_status")
        for statement in ("DELETE FROM platform_events", "UPDATE event_aggregations SET total_events = 0",
                          "SELECT emit_platform_event('user.login', gen_random_uuid())"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_pipeline_role_keeps_its_books_and_anonymises(login_role, client: AnalyticsClient) -> None:
    user = uuid.uuid4()
    client.set_user(user)
    event_id = client.track_user_login("github")
    with psycopg.connect(login_role("workdev_pipeline"), autocommit=True) as conn:
        conn.execute("INSERT INTO pipeline_watermarks (consumer, tx_watermark) VALUES ('lake', 1)")
        conn.execute("INSERT INTO warehouse_sync_status (warehouse, batch_id, status) VALUES ('lake', 'b', 'running')")
        conn.execute("INSERT INTO event_failures (event_id, event_timestamp, event_type, error_kind, error_message)"
                     " VALUES (%s, now(), 'user.login', 'enrichment', 'boom')", (event_id,))
        assert conn.execute("UPDATE platform_events SET user_id = NULL WHERE user_id = %s", (user,)).rowcount == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE event_schemas SET active = false")

"""Least privilege: what each role can and cannot do, connected as a real login of that role."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timedelta

import psycopg
import pytest

from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.errors import AccessDenied

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


def test_the_application_role_emits_and_reads_through_the_functions(app_url: str, conn: psycopg.Connection,
                                                                    now: datetime) -> None:
    user = uuid.uuid4()
    with AnalyticsClient(app_url, user_id=user, acting_user_id=user) as app:
        app.init_session(user_agent="Mozilla/5.0", ip_address="8.8.8.8")
        one = app.track_user_login("github", True)
        many = app.emit_many([{"event_type": "user.logout", "user_id": user} for _ in range(50)]).event_ids
        page = app.query_events(start_date=now - timedelta(hours=1), end_date=now + timedelta(hours=1), user_id=user)
        assert page.total == 51 and one in {e["event_id"] for e in page.events}
        assert app.get_dashboard_metrics().logins_today >= 1
        assert app.query_aggregations(aggregation_type="hourly", start_date=now.date(), end_date=now.date()).rows == []
    assert conn.execute("SELECT count(*) FROM platform_event_store WHERE event_id = ANY(%s)",
                        ([one, *many],)).fetchone()[0] == 51
    with psycopg.connect(app_url) as app_conn:  # the catalog's public columns are readable, for type pickers
        assert app_conn.execute("SELECT count(*) FROM event_schemas WHERE active").fetchone()[0] > 0


def test_the_application_role_only_inserts_into_its_batch_table(app_url: str, conn: psycopg.Connection) -> None:
    """The session's batch table belongs to the functions' owner: the producer may insert rows, nothing else (no
    trigger, rule, policy, ALTER, read or TRUNCATE); a pg_temp.event_ingest_batch of its own is refused."""
    with psycopg.connect(app_url, autocommit=True) as app:
        app.execute("SELECT open_event_batch()")
        app.execute("INSERT INTO pg_temp.event_ingest_batch (ord, event_id, id_supplied) VALUES (0, gen_random_uuid(),"
                    " false)")
        for statement in ("SELECT * FROM pg_temp.event_ingest_batch", "TRUNCATE pg_temp.event_ingest_batch",
                          "UPDATE pg_temp.event_ingest_batch SET ord = 1", "DROP TABLE pg_temp.event_ingest_batch",
                          "ALTER TABLE pg_temp.event_ingest_batch ENABLE ROW LEVEL SECURITY",
                          "CREATE RULE swap AS ON INSERT TO pg_temp.event_ingest_batch DO INSTEAD NOTHING",
                          "CREATE TRIGGER swap BEFORE INSERT ON pg_temp.event_ingest_batch FOR EACH ROW"
                          " EXECUTE FUNCTION suppress_redundant_updates_trigger()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute(statement)
    for own in ("CREATE TEMP VIEW event_ingest_batch AS SELECT 0 AS ord, gen_random_uuid() AS event_id",
                "CREATE TEMP TABLE event_ingest_batch (ord integer, event_id uuid, id_supplied boolean, event_type"
                " text, user_id uuid, entity_type text, entity_id text, event_data jsonb, metadata jsonb, source text,"
                " \"timestamp\" timestamptz, session_id uuid)"):
        with psycopg.connect(app_url, autocommit=True) as app:
            app.execute(own)
            for call in ("SELECT open_event_batch()", "SELECT emit_staged_events(false)"):
                with pytest.raises(psycopg.Error, match="no batch table of this session") as caught:
                    app.execute(call)
                assert caught.value.sqlstate == "WD009"
    assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 0


def test_the_analyst_reads_pseudonymised_events_and_changes_nothing(login_role, client: AnalyticsClient) -> None:
    client.track_user_login("github")
    with psycopg.connect(login_role("workdev_analyst"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM analyst_events").fetchone()[0] == 1
        conn.execute("SELECT * FROM warehouse_sync_status")
        conn.execute("SELECT event_id, error_kind, retry_count FROM event_failures")
        for statement in ("DELETE FROM platform_events", "UPDATE event_aggregations SET total_events = 0",
                          "SELECT emit_platform_event('user.login', gen_random_uuid())",
                          # raw events, raw user ids, the pseudonyms' key, dead-letter messages
                          "SELECT count(*) FROM platform_events", "SELECT count(*) FROM platform_event_store",
                          "SELECT count(*) FROM pipeline_event_rows", "SELECT count(*) FROM pipeline_store_rows",
                          "SELECT count(*) FROM user_attributes",
                          "SELECT key FROM pseudonym_keys", "SELECT error_message FROM event_failures",
                          "SELECT * FROM event_failures"):
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
        # what a sweep reads: the store's columns and the users' attributes
        assert conn.execute("SELECT count(*) FROM pipeline_store_rows").fetchone()[0] == 1
        conn.execute("SELECT user_id, user_role, signed_up_at FROM user_attributes")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE event_schemas SET active = false")


# -- per-user access and pseudonyms ----------------------------------------------------------------------------

QUERY = "SELECT * FROM query_platform_events(now() - interval '1 hour', now() + interval '1 hour', %s, %s, %s, %s)"
COUNT = "SELECT count_platform_events(now() - interval '1 hour', now() + interval '1 hour', NULL, %s)"


@pytest.fixture
def two_users(client: AnalyticsClient) -> tuple[uuid.UUID, uuid.UUID]:
    """Alice with 3 events, Bob with 2, all with a network identity in their metadata."""
    alice, bob = uuid.uuid4(), uuid.uuid4()
    client.init_session(user_agent="Mozilla/5.0 (secret-agent)", ip_address="203.0.113.9")
    for user, n in ((alice, 3), (bob, 2)):
        client.set_user(user)
        for _ in range(n):
            client.track_user_login("github")
    return alice, bob


def test_the_application_role_reads_only_the_signed_in_users_events(app_url: str, two_users, now: datetime) -> None:
    alice, bob = two_users
    window = {"start_date": now - timedelta(hours=1), "end_date": now + timedelta(hours=1)}
    with AnalyticsClient(app_url, acting_user_id=alice) as app:
        page = app.query_events(**window)
        assert (page.total, {e["user_id"] for e in page.events}) == (3, {alice})
        assert app.query_events(**window, user_id=alice).total == 3
        with pytest.raises(AccessDenied, match=f"the signed-in user {alice} may not read the events of user {bob}"):
            app.query_events(**window, user_id=bob)
        as_bob = app.acting_as(bob).query_events(**window)
        assert (as_bob.total, {e["user_id"] for e in as_bob.events}) == (2, {bob})
        with pytest.raises(AccessDenied, match="no signed-in user"):  # nothing of Bob's lingers on the pool
            app.acting_as(None).query_events(**window)
        assert all(e["metadata"] == {"device_fingerprint": e["metadata"]["device_fingerprint"]} for e in page.events)

    with psycopg.connect(app_url, autocommit=True) as conn:  # the SQL functions themselves, as the role
        for statement, params in ((QUERY, (None, None, 100, 0)), (COUNT, (None,))):
            with pytest.raises(psycopg.Error, match="no signed-in user") as caught:
                conn.execute(statement, params)
            assert caught.value.sqlstate == "WD012"
        conn.execute("SELECT set_config('workdev.user_id', %s, false)", (str(bob),))
        assert {r[3] for r in conn.execute(QUERY, (None, None, 100, 0))} == {bob}
        assert conn.execute(COUNT, (None,)).fetchone()[0] == 2
        with pytest.raises(psycopg.Error, match="may not read the events of user") as caught:
            conn.execute(COUNT, (alice,))
        assert caught.value.sqlstate == "WD012"
        conn.execute("SET workdev.user_id = 'not-a-uuid'")
        with pytest.raises(psycopg.Error, match=r"workdev\.user_id 'not-a-uuid' is not a UUID"):
            conn.execute(COUNT, (None,))


def test_set_role_to_the_application_role_is_the_application_role(conn: psycopg.Connection, two_users) -> None:
    alice, _ = two_users
    assert conn.execute(COUNT, (None,)).fetchone()[0] == 5  # the superuser reads everything
    conn.execute("SET ROLE workdev_app")
    with pytest.raises(psycopg.Error, match="no signed-in user"):
        conn.execute(COUNT, (None,))
    conn.execute("SELECT set_config('workdev.user_id', %s, false)", (str(alice),))
    assert conn.execute(COUNT, (None,)).fetchone()[0] == 3
    conn.execute("RESET ROLE")


def test_the_pipeline_and_the_admin_read_every_users_events(login_role, db: str, two_users, now: datetime) -> None:
    alice, bob = two_users
    for url in (login_role("workdev_pipeline"), db):
        with AnalyticsClient(url) as reader:
            page = reader.query_events(start_date=now - timedelta(hours=1), end_date=now + timedelta(hours=1))
            assert (page.total, {e["user_id"] for e in page.events}) == (5, {alice, bob})
            assert all("ip_address" not in e["metadata"] for e in page.events)


def test_the_analyst_sees_keyed_pseudonyms_and_no_personal_data(login_role, client: AnalyticsClient,
                                                                two_users) -> None:
    alice, bob = two_users
    client.set_user(bob)
    viewed = client.track_profile_viewed(alice)
    client.track("message.sent", {"conversation_id": str(uuid.uuid4()), "recipient_user_id": str(alice).upper(),
                                  "email": "alice@example.com", "contact": {"Phone_Number": "+44 20 7946 0000"}})
    with psycopg.connect(login_role("workdev_analyst"), autocommit=True) as conn:
        rows = conn.execute("SELECT event_id, event_type, user_id, entity_id, event_data, metadata "
                            "FROM analyst_events").fetchall()
        text = str(rows)
        for secret in (str(alice), str(bob), "alice@example.com", "7946", "203.0.113.9", "secret-agent"):
            assert secret.lower() not in text.lower()
        by_type: dict[str, list] = {}
        for row in rows:
            by_type.setdefault(row[1], []).append(row)
        logins = by_type["user.login"]
        assert len({r[2] for r in logins}) == 2  # a pseudonym per user, stable across their events
        pseudonym_of = {n: p for p, n in Counter(r[2] for r in logins).items()}  # alice has 3 logins, bob 2
        assert by_type["profile.viewed"][0][0] == viewed
        assert by_type["profile.viewed"][0][3] == str(pseudonym_of[3])  # the viewed profile is alice's
        message = by_type["message.sent"][0]
        assert message[2] == pseudonym_of[2]
        assert message[4]["recipient_user_id"] == str(pseudonym_of[3])
        assert "email" not in message[4] and message[4]["contact"] == {}

        # the query functions give analysts the same view, and filter by pseudonym
        via_function = conn.execute(QUERY, (["user.login"], pseudonym_of[3], 100, 0)).fetchall()
        assert len(via_function) == 3 and {r[3] for r in via_function} == {pseudonym_of[3]}
        assert all(r[7] == {"device_fingerprint": r[7]["device_fingerprint"]} for r in via_function)
        assert conn.execute(COUNT, (alice,)).fetchone()[0] == 0  # a raw user id matches nothing

"""The seed's monitoring queries and GDPR statement run as written, and tell the truth."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from tests.seed_queries import (
    CHECK_SYNC_STATUS,
    EVENT_PROCESSING_METRICS,
    FAILED_EVENTS,
    GDPR_ANONYMIZE,
    REALTIME_METRICS,
)
from workdev_pipeline.client import AnalyticsClient


def login_events(n: int, user: uuid.UUID | None = None) -> list[dict]:
    return [{"event_type": "user.login", "user_id": user or uuid.uuid4(), "event_data": {"method": "password"}}
            for _ in range(n)]


def test_processing_status_is_derived_from_sweeps_and_failures(client: AnalyticsClient,
                                                                conn: psycopg.Connection) -> None:
    first = client.emit_many(login_events(10)).event_ids
    assert dict((s, c) for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)) == {"pending": 10}

    # a consumer sweeps everything committed so far (its watermark past the newest event's transaction;
    # the snapshot's xmin would do too, but it is cluster-wide: another database's long transaction lowers it)
    high = conn.execute("SELECT max(tx_id) + 1 FROM platform_event_store").fetchone()[0]
    conn.execute("INSERT INTO pipeline_watermarks (consumer, tx_watermark) VALUES ('lake', %s)", (high,))
    conn.execute("INSERT INTO ingestion_sweeps (consumer, tx_low, tx_high, events) VALUES ('lake', 0, %s, 10)",
                 (high,))
    # two of them turned out bad: the dead letter
    for event_id, retries in ((first[0], 0), (first[1], 3)):
        conn.execute(
            "INSERT INTO event_failures (event_id, event_timestamp, event_type, error_kind, error_message,"
            " retry_count) SELECT event_id, \"timestamp\", event_type, 'validation', 'bad payload', %s"
            " FROM platform_event_store WHERE event_id = %s", (retries, event_id))
    client.emit_many(login_events(5))  # arrived after the sweep

    stats = {s: (c, float(r)) for s, c, r in conn.execute(EVENT_PROCESSING_METRICS)}
    assert stats == {"processed": (8, 0.0), "failed": (2, 1.5), "pending": (5, 0.0)}
    failed = conn.execute(FAILED_EVENTS).fetchall()
    assert {r[0] for r in failed} == set(first[:2])
    assert all(r[1] == "user.login" and r[2] == "bad payload" for r in failed)
    processed_at = conn.execute("SELECT count(processed_at) FROM platform_events"
                                " WHERE processing_status = 'processed'").fetchone()[0]
    assert processed_at == 8

    # replayed successfully: resolved failures count as processed, and leave the failed list
    conn.execute("UPDATE event_failures SET resolved_at = now()")
    assert conn.execute(FAILED_EVENTS).fetchall() == []
    assert dict((s, c) for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)) == {"processed": 10, "pending": 5}
    # a second, lagging consumer holds events pending until it, too, has swept them
    conn.execute("INSERT INTO pipeline_watermarks (consumer, tx_watermark) VALUES ('bigquery', 0)")
    assert dict((s, c) for s, c, _ in conn.execute(EVENT_PROCESSING_METRICS)) == {"processed": 2, "pending": 13}


def test_sync_status_and_realtime_metrics_queries(client: AnalyticsClient, conn: psycopg.Connection) -> None:
    for n in range(12):
        conn.execute("INSERT INTO warehouse_sync_status (warehouse, partition_key, batch_id, status, events_total,"
                     " events_loaded, created_at) VALUES ('lake', '2026-11-25', %s, 'succeeded', 5, 5,"
                     " now() - make_interval(mins => %s))", (f"b{n}", n))
    rows = conn.execute(CHECK_SYNC_STATUS).fetchall()
    assert [r[3] for r in rows] == [f"b{n}" for n in range(10)]

    assert conn.execute(REALTIME_METRICS).fetchall() == []
    client.get_dashboard_metrics()
    metrics = {k: v for k, v, _ in conn.execute(REALTIME_METRICS)}
    assert {"active_users_last_hour", "projects_created_today", "proposals_submitted_today"} <= set(metrics)


def test_the_gdpr_statement_anonymises_a_real_user(client: AnalyticsClient, conn: psycopg.Connection) -> None:
    doomed, bystander = uuid.uuid4(), uuid.uuid4()
    personal = {"event_type": "user.registered", "event_data": {"role": "client", "email": "a@b.c", "phone": "+1",
                                                                "address": "1 Main St", "signup_source": "ad"},
                "metadata": {"ip_address": "81.2.69.142", "user_agent": "Firefox", "platform": "web"},
                "timestamp": datetime.now(UTC) - timedelta(days=40)}  # an older partition too
    client.emit_many([{**personal, "user_id": doomed}, {**personal, "user_id": doomed, "timestamp": None},
                      {**personal, "user_id": bystander}])
    statement = GDPR_ANONYMIZE.replace("'user-to-delete'", f"'{doomed}'")
    assert conn.execute(statement).rowcount == 2

    assert conn.execute("SELECT count(*) FROM platform_events WHERE user_id = %s", (doomed,)).fetchone()[0] == 0
    scrubbed = conn.execute("SELECT event_data, metadata FROM platform_event_store WHERE user_id IS NULL").fetchall()
    assert scrubbed == [({"role": "client", "signup_source": "ad"}, {"platform": "web"})] * 2
    kept = conn.execute("SELECT event_data, metadata FROM platform_event_store WHERE user_id = %s",
                        (bystander,)).fetchone()
    assert kept == (personal["event_data"], personal["metadata"])
    assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 3

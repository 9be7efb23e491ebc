"""`workdev-pipeline demo`: realistic traffic lands in the store, deterministically and only once."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from workdev_pipeline import catalog
from workdev_pipeline.demo_loader import load_demo


def test_demo_traffic_is_stored_once_with_its_users(db: str, conn: psycopg.Connection, now: datetime) -> None:
    now = now.replace(microsecond=0) - timedelta(minutes=1)
    report = load_demo(db, users=300, events=6_000, days=3, seed=7, now=now, batch_size=2_500)
    assert (report.users, report.events_emitted, report.events_inserted) == (300, 6_000, 6_000)
    assert conn.execute("SELECT count(*) FROM user_profiles").fetchone()[0] == 300
    rows = conn.execute(
        "SELECT count(*), count(DISTINCT event_type), min(\"timestamp\"), max(\"timestamp\"), count(DISTINCT user_id),"
        " count(*) FILTER (WHERE user_id IS NOT NULL AND user_id NOT IN (SELECT user_id FROM user_attributes))"
        " FROM platform_event_store").fetchone()
    total, types, first, last, users, strangers = rows
    assert total == 6_000 and types >= len(catalog.EVENT_TYPES) - 4
    assert now - timedelta(days=3) <= first and last <= now
    assert 1 < users <= 300 and strangers == 0
    categories = dict(conn.execute("SELECT event_category, count(*) FROM platform_event_store GROUP BY 1").fetchall())
    assert set(categories) == set(catalog.CATEGORIES)
    assert categories["interaction"] > categories["transaction"]
    # nothing fell outside the monthly partitions
    assert conn.execute("SELECT count(*) FROM platform_event_store_default").fetchone()[0] == 0

    again = load_demo(db, users=300, events=6_000, days=3, seed=7, now=now, batch_size=2_500)
    assert again.events_inserted == 0
    assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 6_000

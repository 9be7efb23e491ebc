"""Load generated demo traffic (``workdev_pipeline.demo``) into a database: users, then events."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from workdev_pipeline.client import AnalyticsClient, chunked
from workdev_pipeline.demo import DemoUser, generate_events, generate_users
from workdev_pipeline.sql_files import query

#: Events per emit_many call (one transaction each), so a long demo commits as it goes.
EVENTS_PER_TRANSACTION = 100_000


@dataclass(frozen=True)
class DemoReport:
    users: int
    events_emitted: int
    events_inserted: int
    seconds: float


def store_users(conn: psycopg.Connection, users: list[DemoUser]) -> None:
    """Upsert the demo users into ``user_profiles`` (the source behind ``user_attributes``)."""
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE staged_users (LIKE user_profiles INCLUDING DEFAULTS) ON COMMIT DROP")
        with cur.copy("COPY staged_users (user_id, role, signed_up_at, country) FROM STDIN") as copy:
            for u in users:
                copy.write_row((u.user_id, u.role, u.signed_up_at, u.country))
        cur.execute(query("upsert_staged_users"))


def load_demo(conninfo: str, *, users: int = 2_000, events: int = 100_000, days: float = 7.0, seed: int = 42,
              now: datetime | None = None, batch_size: int = 10_000, progress: bool = False) -> DemoReport:
    """Create ``users`` users and emit ``events`` events over the past ``days`` days.

    Deterministic for a given seed and ``now``; the generated events carry their own ids, so loading the
    same demo twice stores every event once.
    """
    now = now or datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    people = generate_users(users, seed=seed, now=now)
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT ensure_event_partitions(%s, %s)", (now - timedelta(days=days), now))
        store_users(conn, people)
    stream = generate_events(people, events, days=days, seed=seed, now=now)
    inserted = 0
    with AnalyticsClient(conninfo, source="demo") as client, _progress(events, progress) as bar:
        for chunk in chunked(stream, EVENTS_PER_TRANSACTION):
            inserted += client.emit_many(chunk, batch_size=batch_size).inserted
            bar.update(len(chunk))
    return DemoReport(len(people), events, inserted, time.perf_counter() - started)


def _progress(total: int, enabled: bool):  # -> tqdm
    from tqdm import tqdm

    return tqdm(total=total, unit="ev", unit_scale=True, desc="demo events", disable=not enabled)

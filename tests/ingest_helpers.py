"""Helpers of the ingestion tests: demo traffic, the warehouse's rows, PostgreSQL's truth."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg

from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.ingest.local_store import LocalEventFiles

REPO = Path(__file__).resolve().parent.parent


def demo(url: str, events: int, *, users: int = 300, days: float = 3.0, seed: int = 7) -> None:
    load_demo(url, users=users, events=events, days=days, seed=seed, progress=False)


def warehouse_ids(files: LocalEventFiles) -> list[str]:
    """Every event_id the warehouse holds (with repeats, if any)."""
    if not files.days():
        return []
    return [r[0] for r in duckdb.execute("SELECT event_id FROM read_parquet(?)", [files.glob()]).fetchall()]


def warehouse_days(files: LocalEventFiles) -> dict[str, int]:
    """Rows per event_date directory, as DuckDB's Hive partitioning reads them."""
    if not files.days():
        return {}
    rows = duckdb.execute("SELECT event_date::text, count(*) FROM read_parquet(?, hive_partitioning = true) "
                          "GROUP BY 1", [files.glob()]).fetchall()
    return dict(rows)


def loadable_ids(conn: psycopg.Connection) -> set[str]:
    """What the warehouse must hold once everything is swept: every event not in the dead letter."""
    return {r[0] for r in conn.execute(
        "SELECT event_id::text FROM platform_event_store e WHERE NOT EXISTS "
        "(SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL)")}


def days_in_postgres(conn: psycopg.Connection) -> dict[str, int]:
    return {d: n for d, n in conn.execute(
        "SELECT (\"timestamp\" AT TIME ZONE 'UTC')::date::text, count(*) FROM platform_event_store e "
        "WHERE NOT EXISTS (SELECT 1 FROM event_failures f WHERE f.event_id = e.event_id AND f.resolved_at IS NULL) "
        "GROUP BY 1")}


def sweep_in_subprocess(url: str, data_dir: Path, *, crash_at: str | None = None,
                        operation: str = "sweep", day: str | None = None) -> subprocess.CompletedProcess:
    """Run one sweep/rebuild/replay in a separate process (optionally SIGKILLed at a crash point)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data_dir)}
    if crash_at:
        env["WORKDEV_CRASH_AT"] = crash_at
    code = (
        "import sys, datetime\n"
        "from workdev_pipeline.ingest.ingestor import Ingestor\n"
        "from workdev_pipeline.ingest.local_store import LocalEventFiles\n"
        "ing = Ingestor(sys.argv[1], LocalEventFiles(sys.argv[2]), backoff_seconds=0.01)\n"
        "op = sys.argv[3]\n"
        "o = ing.sweep() if op == 'sweep' else ing.replay() if op == 'replay' else "
        "ing.rebuild([datetime.date.fromisoformat(sys.argv[4])])\n"
        "print(o.status, o.events_loaded)\n"
    )
    args = [sys.executable, "-c", code, url, str(data_dir), operation] + ([day] if day else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def wait_until_lock_released(url: str, timeout: float = 15.0) -> None:
    """A killed process's session (and its advisory lock) goes when PostgreSQL notices the closed socket:
    usually at once, but not synchronously with the kill."""
    import time

    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                           "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                           ).fetchone()[0]:
            if time.monotonic() > deadline:
                raise TimeoutError("the killed run's advisory lock was not released")
            time.sleep(0.05)

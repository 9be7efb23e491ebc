"""Helpers of the ingestion tests: demo traffic, the lake's rows, PostgreSQL's truth."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time
from pathlib import Path

import psycopg

from tests.waiting import wait_until
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.demo_loader import load_demo
from workdev_pipeline.lake.events import EventLake

REPO = Path(__file__).resolve().parent.parent


def demo(url: str, events: int, *, users: int = 300, days: float = 3.0, seed: int = 7) -> None:
    load_demo(url, users=users, events=events, days=days, seed=seed, progress=False)


def emit_bad_budgets(url: str, n: int) -> list:
    """``n`` project.created events whose budget is a string: the sweep dead-letters them (validation)."""
    with AnalyticsClient(url, user_id=uuid.uuid4()) as client:
        return [client.track("project.created", {"title": f"p{i}", "budget": "lots", "project_type": "fixed"})
                for i in range(n)]


def accept_any_budget(conn: psycopg.Connection) -> None:
    """The cause fixed: project.created's schema takes any budget (a replay's transformer reads it anew)."""
    conn.execute("UPDATE event_schemas SET json_schema = json_schema #- '{properties,budget}' "
                 "WHERE event_type = 'project.created'")


def lake_ids(lake: EventLake) -> list[str]:
    """Every event_id the lake holds (with repeats, if any)."""
    return [r[0] for r in lake.snapshot().query("SELECT event_id FROM platform_events")]


def lake_days(lake: EventLake) -> dict[str, int]:
    """Rows per event_date partition."""
    return dict(lake.snapshot().query("SELECT event_date::text, count(*) FROM platform_events GROUP BY 1"))


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


def make_first_day_largest(url: str, days: list[str]) -> None:
    """Emit logins on the first of ``days`` (ISO dates) until it holds more events than any other of them: a demo
    loaded at midnight UTC spreads its events evenly over whole days, and a test telling days apart by their sizes
    must not depend on the hour it runs."""
    with psycopg.connect(url) as conn:
        sizes = days_in_postgres(conn)
    missing = max(sizes.get(d, 0) for d in days[1:]) - sizes.get(days[0], 0) + 1
    noon = datetime.combine(date.fromisoformat(days[0]), time(12), UTC)
    with AnalyticsClient(url, user_id=uuid.uuid4()) as client:
        for _ in range(max(missing, 1)):
            client.track("user.login", {"method": "password", "mfa_used": False}, timestamp=noon)


def sweep_in_subprocess(url: str, lake_root: Path, *, crash_at: str | None = None,
                        operation: str = "sweep", day: str | None = None) -> subprocess.CompletedProcess:
    """Run one sweep/rebuild/replay of the lake at ``lake_root`` in a separate process (optionally SIGKILLed at a
    crash point)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(lake_root.parent)}
    if crash_at:
        env["WORKDEV_CRASH_AT"] = crash_at
    code = (
        "import sys, datetime\n"
        "from workdev_pipeline.ingest.ingestor import Ingestor\n"
        "from workdev_pipeline.lake import EventLake, LakeLocation\n"
        "ing = Ingestor(sys.argv[1], EventLake(LakeLocation.from_env(sys.argv[2])), backoff_seconds=0.01)\n"
        "op = sys.argv[3]\n"
        "o = ing.sweep() if op == 'sweep' else ing.replay() if op == 'replay' else "
        "ing.rebuild([datetime.date.fromisoformat(sys.argv[4])])\n"
        "print(o.status, o.events_loaded)\n"
    )
    args = [sys.executable, "-c", code, url, str(lake_root), operation] + ([day] if day else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=REPO)


def wait_until_lock_released(url: str, timeout: float = 120.0) -> None:
    """A killed process's session (and its advisory lock) goes when PostgreSQL notices the closed socket:
    usually at once, but not synchronously with the kill."""
    with psycopg.connect(url, autocommit=True) as conn:
        wait_until(lambda: conn.execute(
            "SELECT pid, objid, mode, granted FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchall(),
            "the killed run's advisory locks released", timeout=timeout, until=lambda held: not held, interval=0.05)

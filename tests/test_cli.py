"""The installed `workdev-pipeline` command, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from workdev_pipeline.settings import MIGRATIONS_DIR

CLI = Path(sys.executable).with_name("workdev-pipeline")


def run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKDEV_DATABASE_URL": url}
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_migrate_emit_demo_and_clear_errors(empty_db: str) -> None:
    first = run("migrate", url=empty_db)
    assert first.returncode == 0, first.stderr
    migrations = len(list(MIGRATIONS_DIR.glob("*.sql")))
    assert f"applied {migrations} migration(s)" in first.stdout and "32 added" in first.stdout
    assert f"applied 0 migration(s); {migrations} already applied" in run("migrate", url=empty_db).stdout

    user = uuid.uuid4()
    emitted = run("emit", "user.login", "--user-id", str(user), "--data", '{"method": "github"}', url=empty_db)
    assert emitted.returncode == 0, emitted.stderr
    event_id = uuid.UUID(emitted.stdout.strip())

    bad = run("emit", "user.teleported", "--user-id", str(user), url=empty_db)
    assert bad.returncode == 2
    assert "error: unknown event type 'user.teleported'" in bad.stderr and "Traceback" not in bad.stderr
    bad_json = run("emit", "user.login", "--data", "{method", url=empty_db)
    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr

    demo = run("demo", "--users", "50", "--events", "800", "--days", "1", url=empty_db)
    assert demo.returncode == 0, demo.stderr
    assert "800 events emitted (800 new)" in demo.stdout

    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 801
        assert conn.execute("SELECT user_id FROM platform_event_store WHERE event_id = %s",
                            (event_id,)).fetchone() == (user,)


def test_up_migrates_and_seeds_demo_traffic_once(empty_db: str) -> None:
    first = run("up", "--demo-events", "500", url=empty_db)
    assert first.returncode == 0, first.stderr
    assert "demo traffic: 500 events" in first.stdout
    second = run("up", "--demo-events", "500", url=empty_db)
    assert "event store holds 500 events; no demo traffic generated" in second.stdout


def test_sweep_then_rebuild_a_range_with_progress(db: str, tmp_path: Path) -> None:
    from tests.ingest_helpers import days_in_postgres, demo

    demo(db, 900, days=3)
    env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_WAREHOUSE_DIR": str(tmp_path / "warehouse")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120, check=False)

    assert cli("sweep").returncode == 0
    with psycopg.connect(db) as conn:
        days = sorted(days_in_postgres(conn))
    rebuilt = cli("rebuild", "--from", days[0], "--to", days[-1])
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"rebuild loaded: {900:,} loaded" in rebuilt.stdout
    assert f"{len(days)}/{len(days)}" in rebuilt.stderr  # the progress bar, one step per day
    backwards = cli("rebuild", "--from", days[-1], "--to", days[0])
    assert backwards.returncode == 2 and "is before --from" in backwards.stderr

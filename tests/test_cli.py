"""The installed `workdev-pipeline` command, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg

from workdev_pipeline.lake import EventLake, LakeLocation
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


def test_sweep_then_rebuild_a_range_is_one_lake_commit_with_progress(db: str, tmp_path: Path) -> None:
    from tests.ingest_helpers import days_in_postgres, demo, lake_days

    demo(db, 900, days=3)
    lake_dir = tmp_path / "lake"
    lake = EventLake(LakeLocation.from_env(str(lake_dir)))
    env = {**os.environ, "WORKDEV_DATABASE_URL": db}
    env.pop("WORKDEV_LAKE_URI", None)

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], capture_output=True, text=True, env={**env, **extra}, timeout=120,
                              check=False)

    swept = cli("sweep", "--lake-uri", str(lake_dir))
    assert swept.returncode == 0, swept.stderr
    assert "sweep loaded: 900 loaded" in swept.stdout
    assert lake.version() == 1  # the table's creation, then the sweep's one commit
    with psycopg.connect(db) as conn:
        counts = days_in_postgres(conn)
    first = date.fromisoformat(min(counts))
    days = [first + timedelta(days=i) for i in range(3)]
    others = {d: lake.snapshot().day_files(d) for d in lake.snapshot().days() if d not in days}
    before = lake.version()

    # the same lake through the environment this time (WORKDEV_LAKE_URI, as --lake-uri's envvar)
    rebuilt = cli("rebuild", "--from", days[0].isoformat(), "--to", days[-1].isoformat(),
                  WORKDEV_LAKE_URI=str(lake_dir))
    assert rebuilt.returncode == 0, rebuilt.stderr
    expected = sum(counts.get(d.isoformat(), 0) for d in days)
    assert f"rebuild loaded: {expected:,} loaded" in rebuilt.stdout
    assert "3/3" in rebuilt.stderr  # the progress bar, one step per day
    assert lake.version() == before + 1  # the whole 3-day range: exactly one Delta commit
    assert lake_days(lake) == counts  # every event of PostgreSQL, once
    assert {d: lake.snapshot().day_files(d) for d in others} == others  # days outside the range untouched
    backwards = cli("rebuild", "--lake-uri", str(lake_dir), "--from", days[-1].isoformat(), "--to",
                    days[0].isoformat())
    assert backwards.returncode == 2 and "is before --from" in backwards.stderr
    assert lake.version() == before + 1


def test_a_bad_lake_uri_is_one_error_line(db: str, tmp_path: Path) -> None:
    for command in (["sweep"], ["rebuild", "--from", "2026-01-01"], ["replay"]):
        env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": "ftp://x", "WORKDEV_HOME": str(tmp_path)}
        result = subprocess.run([str(CLI), *command], capture_output=True, text=True, env=env, timeout=120,
                                check=False)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "ftp://x" in lines[0], result.stderr
        assert "Traceback" not in result.stderr and not result.stdout
    assert not (tmp_path / "lake").exists()  # no fallback to the default lake


def test_a_too_deep_payload_is_one_error_line(db: str) -> None:
    for levels in (33, 1_000):  # refused by the database; by the command before the client recurses
        data = '{"method": "github", "deep": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"
        bad = run("emit", "user.login", "--user-id", str(uuid.uuid4()), "--data", data, url=db)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr == "error: event_data is nested deeper than 32 levels\n"
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM platform_event_store").fetchone()[0] == 0

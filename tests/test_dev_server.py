"""The README's run command, for real: ``workdev-pipeline dev`` starts Dagster's webserver and daemon, and the
daemon's ingest sensor loads the pending events into the lake with no one clicking anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg

from tests.ingest_helpers import demo, lake_ids, loadable_ids
from workdev_pipeline.lake import EventLake, LakeLocation


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dev_serves_the_ui_and_the_sensor_loads_events(db: str, tmp_path: Path) -> None:
    demo(db, 2_000)
    port = _free_port()
    env = {**os.environ, "WORKDEV_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "WORKDEV_LAKE_URI": str(tmp_path / "lake")}
    cli = Path(sys.executable).with_name("workdev-pipeline")
    server = subprocess.Popen([str(cli), "dev", "--database-url", db, "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    files = EventLake(LakeLocation.from_env(str(tmp_path / "lake")))
    try:
        deadline = time.monotonic() + 120
        while True:  # the UI answers on loopback
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the webserver did not come up"
                time.sleep(1)
        # the instance it wrote: the run queue (the sweep run below goes through it)
        assert "QueuedRunCoordinator" in (tmp_path / "dagster" / "dagster.yaml").read_text()
        with psycopg.connect(db) as conn:
            expected = loadable_ids(conn)
        while sorted(lake_ids(files)) != sorted(expected):  # the sensor requests a sweep run by itself
            assert server.poll() is None and time.monotonic() < deadline, "the sensor did not load the events"
            time.sleep(2)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    assert server.returncode is not None

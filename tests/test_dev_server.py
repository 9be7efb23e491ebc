"""The README's run command, for real: ``workdev-pipeline dev`` starts Dagster's webserver and daemon, and the
daemon's ingest sensor loads the pending events into the lake with no one clicking anything. The server's output
goes to ``workdev-dev.log`` in the test's tmp dir (kept by pytest), its tail shown when the test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance

from tests.dagster_dev_server import free_port, graphql
from tests.ingest_helpers import days_in_postgres, demo, lake_ids, loadable_ids
from tests.waiting import wait_until
from workdev_pipeline.assets.keys import LAKE_EVENTS
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.partitions_start import PARTITIONS_START_ENV

pytestmark = pytest.mark.slow
TIMEOUT = 300.0  # seconds for each wait, generous on a shared 2-core machine
PARTITION_KEYS = ("query Keys($path: [String!]!) { assetNodeOrError(assetKey: {path: $path}) { ... on AssetNode { "
                  "partitionKeysByDimension { partitionKeys } } } }")


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def test_dev_serves_the_ui_and_the_sensor_loads_events(db: str, tmp_path: Path) -> None:
    """... and, WORKDEV_PARTITIONS_START unset, the partitions start at the demo's first day and read as filled
    for every day of the demo once the sensor's sweep has run."""
    demo(db, 2_000)
    port = free_port()
    env = {**os.environ, "WORKDEV_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "WORKDEV_LAKE_URI": str(tmp_path / "lake"), "PYTHONUNBUFFERED": "1"}
    env.pop(PARTITIONS_START_ENV)  # a fresh demo's environment
    cli = Path(sys.executable).with_name("workdev-pipeline")
    log_path = tmp_path / "workdev-dev.log"
    with log_path.open("wb") as log:  # a file, never a pipe nobody reads (a full pipe blocks the server)
        server = subprocess.Popen([str(cli), "dev", "--database-url", db, "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail() -> str:
        return f"--- {log_path} (tail)\n{log_path.read_text(errors='replace')[-4_000:]}"

    def exited() -> str | None:
        return None if server.poll() is None else f"workdev-pipeline dev exited ({server.returncode})"

    files = EventLake(LakeLocation.from_env(str(tmp_path / "lake")))
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), "the UI to answer on loopback",
                   timeout=TIMEOUT, ignore=(OSError,), gone=exited, context=log_tail)
        # the instance it wrote: the run queue (the sweep run below goes through it)
        assert "QueuedRunCoordinator" in (tmp_path / "dagster" / "dagster.yaml").read_text(), log_tail()
        with psycopg.connect(db) as conn:
            expected = sorted(loadable_ids(conn))
            days = days_in_postgres(conn)
        first = min(days)
        assert f"partitions from {first})" in log_path.read_text(), log_tail()
        keys = graphql(f"http://127.0.0.1:{port}", PARTITION_KEYS, {"path": list(LAKE_EVENTS.path)})
        assert keys["assetNodeOrError"]["partitionKeysByDimension"][0]["partitionKeys"][0] == first
        # the sensor requests a sweep run by itself
        def compared() -> dict[str, object]:
            held = sorted(lake_ids(files))
            return {"lake": len(held), "postgres": len(expected), "same": held == expected}

        wait_until(compared, "the sensor's sweep to load the events", until=lambda c: c["same"], timeout=TIMEOUT,
                   interval=2, gone=exited, context=log_tail)
        with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:  # the partitions read as filled
            wait_until(lambda: instance.get_materialized_partitions(LAKE_EVENTS), "the sweep's day partitions",
                       until=lambda found: found == set(days), timeout=TIMEOUT, interval=2, gone=exited,
                       context=log_tail)
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
    assert server.returncode is not None

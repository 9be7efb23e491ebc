"""The run queue protects ingestion, for real: ``workdev-pipeline dev`` (webserver, daemon, the instance file it
writes: the queued run coordinator with its limits), the dashboard's metrics refresh slowed down -- its table
locked by a transaction held open, so every refresh hangs -- and refreshes queued in front: the ingest sensor's
sweep still starts within one sensor interval of its request and loads the events. Its output goes to
``workdev-dev.log`` in the test's tmp dir, its tail shown when the test fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from dagster_graphql import DagsterGraphQLClient

from tests.dagster_dev_server import RUN_DONE, free_port, graphql, wait_for_code_location
from tests.ingest_helpers import demo, lake_ids, loadable_ids
from tests.waiting import wait_until
from workdev_pipeline.lake import EventLake, LakeLocation
from workdev_pipeline.schedules.sensors import ingest_sensor

pytestmark = pytest.mark.slow
TIMEOUT = 300.0  # seconds for each wait, generous on a shared 2-core machine
SENSOR_INTERVAL = ingest_sensor.minimum_interval_seconds
#: refreshes launched by hand in front of the sweep: more than the instance's run slots (3)
REFRESHES = 4

RUNS = """
query Runs($job: String!) { runsOrError(filter: {pipelineName: $job}) { __typename
  ... on Runs { results { runId status creationTime startTime } } } }
"""


def runs(url: str, job: str) -> list[dict]:
    return graphql(url, RUNS, {"job": job})["runsOrError"]["results"]


def test_a_sweep_starts_within_one_sensor_interval_while_metrics_refreshes_hang(db: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WORKDEV_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dagster"),
           "WORKDEV_LAKE_URI": str(tmp_path / "lake"), "PYTHONUNBUFFERED": "1", "DAGSTER_DISABLE_TELEMETRY": "1"}
    cli = Path(sys.executable).with_name("workdev-pipeline")
    log_path = tmp_path / "workdev-dev.log"
    with log_path.open("wb") as log:  # a file, never a pipe nobody reads (a full pipe blocks the server)
        server = subprocess.Popen([str(cli), "dev", "--database-url", db, "--port", str(port)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail() -> str:
        return f"--- {log_path} (tail)\n{log_path.read_text(errors='replace')[-4_000:]}"

    files = EventLake(LakeLocation.from_env(str(tmp_path / "lake")))
    try:
        location = wait_for_code_location(url, TIMEOUT, context=log_tail)
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=120)
        with psycopg.connect(db) as holder:
            # the metrics refresh slowed down: it cannot write its figures while this transaction holds the table
            # (SHARE: writes wait, and the lock takes no transaction id, which would hold the sweeps back too)
            holder.execute("LOCK TABLE platform_metrics_realtime IN SHARE MODE")
            launched = [client.submit_job_execution("refresh_metrics", repository_location_name=location)
                        for _ in range(REFRESHES)]

            def refreshes() -> dict[str, str]:
                return {r["runId"]: r["status"] for r in runs(url, "refresh_metrics")}

            wait_until(refreshes, "a metrics refresh to start (and hang on the lock)", timeout=TIMEOUT, interval=1,
                       until=lambda found: "STARTED" in found.values(), context=log_tail)

            demo(db, 300)  # events to sweep: the ingest sensor requests a sweep on its next tick
            started = wait_until(lambda: runs(url, "ingest_events"), "the ingest sensor's sweep run to start",
                                 until=lambda found: any(r["startTime"] for r in found), timeout=TIMEOUT,
                                 interval=1, context=log_tail)
            sweep = min((r for r in started if r["startTime"]), key=lambda r: r["creationTime"])
            waited = sweep["startTime"] - sweep["creationTime"]
            assert waited <= SENSOR_INTERVAL, f"the sweep waited {waited:.1f} s in the queue"
            # ... while the refreshes launched before it still hang or wait: it went ahead of them
            assert not set(refreshes().values()) & RUN_DONE
            assert set(launched) <= set(refreshes())

            with psycopg.connect(db) as conn:
                expected = sorted(loadable_ids(conn))
            wait_until(lambda: sorted(lake_ids(files)) == expected, "the sweep to load the events",
                       timeout=TIMEOUT, interval=2, context=log_tail)
            holder.rollback()
    finally:  # only what this test started, by its process group
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)

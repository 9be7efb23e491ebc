"""One ``dagster dev`` (webserver + daemon) of the project's definitions on a test database with a few days of
demo events, shared by the browser and GraphQL tests (a pytest plugin: ``pytest_plugins = [__name__]``), and
the GraphQL helpers both use.

The demo events are swept into the lake before the server starts, by the ingest job run on the server's instance
(as the ``sweep`` command records it): the ingest sensor has nothing pending, the demo's days read materialized and
their checks evaluated, and every day the tests backfill has a known number of events: PostgreSQL's count.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from tests.conftest import create_database, drop_database
from tests.ingest_helpers import days_in_postgres, demo, lake_ids, loadable_ids
from tests.waiting import wait_until
from workdev_pipeline.assets.keys import ENRICHED_EVENTS, LAKE_EVENTS
from workdev_pipeline.cli_runs import RecordedRun, recording
from workdev_pipeline.lake.events import days_predicate
from workdev_pipeline.partitions_start import PARTITIONS_START_ENV, earliest_event_day
from workdev_pipeline.resources.lake import LakeResource

REPO = Path(__file__).resolve().parent.parent
LAKE_EVENTS_PATH = list(LAKE_EVENTS.path)
#: Demo traffic: the past DEMO_DAYS days, so the days before today are whole days of events.
DEMO_DAYS, DEMO_EVENTS, DEMO_USERS = 7.0, 7_000, 300
#: seconds, generous on a shared 2-core machine (a wait returns as soon as its condition holds)
STARTUP_TIMEOUT = 300.0  # webserver up and the code location loaded
RUN_TIMEOUT = 600.0  # a run or a backfill finished
STOP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def today() -> date:
    return datetime.now(UTC).date()


def days_back(first: int, last: int) -> list[date]:
    """[today - first, ..., today - last] (first >= last): whole UTC days of demo traffic."""
    return [today() - timedelta(days=n) for n in range(first, last - 1, -1)]


# -- GraphQL -----------------------------------------------------------------------------------------------


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None, timeout: float = 60.0) -> dict:
    """POST a query to ``/graphql``; returns ``data`` (raises on transport or GraphQL errors)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = json.loads(response.read())
    if payload.get("errors"):
        raise AssertionError(f"GraphQL errors: {payload['errors']}")
    return payload["data"]


LOCATIONS = """
query { workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } ... on RepositoryLocation { name } } } } } }
"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message stack }
  ... on UnauthorizedError { message } ... on InvalidSubsetError { message }
  ... on PartitionSetNotFoundError { message }
  ... on InvalidStepError { invalidStepKey } ... on InvalidOutputError { stepKey invalidOutputName } } }
"""

BACKFILL_STATUS = """
query Backfill($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { id status isAssetBackfill partitionNames numPartitions
    runs(limit: 50) { runId status tags { key value } } error { message } }
  ... on PythonError { message } } }
"""

RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { __typename ... on Run { runId status jobName } } }
"""

INSTIGATORS = """
query { repositoriesOrError { __typename ... on RepositoryConnection { nodes { name
  schedules { id name scheduleState { status } } sensors { id name sensorState { status } } } } } }
"""
STOP_SCHEDULE = ("mutation Stop($id: String) "
                 "{ stopRunningSchedule(id: $id) { __typename ... on PythonError { message } } }")
STOP_SENSOR = "mutation Stop($id: String) { stopSensor(id: $id) { __typename ... on PythonError { message } } }"

BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
RUN_DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def wait_for_code_location(base_url: str, timeout: float = STARTUP_TIMEOUT,
                           context: Callable[[], str] | None = None) -> str:
    """Wait until the webserver has loaded the code location; returns its name."""
    entries = wait_until(lambda: graphql(base_url, LOCATIONS, timeout=10)["workspaceOrError"]["locationEntries"],
                         "the webserver to load the code location", timeout=timeout, context=context,
                         until=lambda found: any(e["loadStatus"] == "LOADED" for e in found or []),
                         ignore=(OSError, KeyError, json.JSONDecodeError))
    location = next(e for e in entries if e["loadStatus"] == "LOADED")["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", f"the code location failed: {location}"
    return location["name"]


def instigators(base_url: str) -> dict[str, tuple[str, str, str]]:
    """Every schedule and sensor: name -> (kind, id, status)."""
    found = {}
    for repo in graphql(base_url, INSTIGATORS)["repositoriesOrError"]["nodes"]:
        found.update({s["name"]: ("schedule", s["id"], s["scheduleState"]["status"]) for s in repo["schedules"]})
        found.update({s["name"]: ("sensor", s["id"], s["sensorState"]["status"]) for s in repo["sensors"]})
    return found


#: Rounds of stops: a schedule or sensor the webserver failed to stop is asked again in the next round.
STOP_ATTEMPTS = 3


def stop_instigators(base_url: str, keep: set[str]) -> list[str]:
    """Stop every running schedule and sensor not in ``keep`` (their runs would only compete for the CPU). A stop the
    webserver answers with a server error (seen once in CI, while the daemon was starting) is asked again after the
    states are read anew, up to ``STOP_ATTEMPTS`` times."""
    stopped: list[str] = []
    for _ in range(STOP_ATTEMPTS):
        failed = []
        for name, (kind, instigator_id, status) in instigators(base_url).items():
            if name in keep or status != "RUNNING":
                continue
            mutation, field = ((STOP_SCHEDULE, "stopRunningSchedule") if kind == "schedule"
                               else (STOP_SENSOR, "stopSensor"))
            try:
                result = graphql(base_url, mutation, {"id": instigator_id})[field]
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise
                failed.append(f"{name}: HTTP {exc.code} {exc.read()[:2000]!r}")
                continue
            assert result["__typename"] != "PythonError", f"could not stop {name}: {result}"
            stopped.append(name)
        if not failed:
            return stopped
    raise AssertionError(f"could not stop {failed}")


def wait_for_backfill(base_url: str, backfill_id: str, timeout: float = RUN_TIMEOUT,
                      context: Callable[[], str] | None = None) -> dict:
    """Poll ``partitionBackfillOrError`` until the backfill is done (and its runs have finished)."""
    def done(backfill: dict) -> bool:
        assert backfill["__typename"] == "PartitionBackfill", backfill
        return backfill["status"] in BACKFILL_DONE and all(r["status"] in RUN_DONE for r in backfill["runs"])

    return wait_until(lambda: graphql(base_url, BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"],
                      f"backfill {backfill_id} to finish", until=done, timeout=timeout, interval=2, context=context)


def wait_for_run(base_url: str, run_id: str, timeout: float = RUN_TIMEOUT,
                 context: Callable[[], str] | None = None) -> str:
    """Poll ``runOrError`` until the run is finished; returns its status."""
    def status() -> str:
        run = graphql(base_url, RUN_STATUS, {"id": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        return run["status"]

    return wait_until(status, f"run {run_id} to finish", until=lambda s: s in RUN_DONE, timeout=timeout,
                      interval=2, context=context)


# -- the server --------------------------------------------------------------------------------------------


@dataclass
class DevServer:
    """A running ``dagster dev`` and what it runs on."""

    process: subprocess.Popen
    port: int
    database_url: str
    lake: LakeResource
    dagster_home: Path
    log_path: Path
    location_name: str = ""
    stopped: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.port, timeout=120)

    def run_job(self, job_name: str, timeout: float = RUN_TIMEOUT, **kwargs: Any) -> tuple[str, DagsterRunStatus]:
        """Launch a job through ``DagsterGraphQLClient`` and poll it until it has finished."""
        client = self.client()
        run_id = client.submit_job_execution(job_name, repository_location_name=self.location_name, **kwargs)
        status = wait_until(lambda: client.get_run_status(run_id), f"run {run_id} of {job_name} to finish",
                            until=lambda s: s in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE,
                                                  DagsterRunStatus.CANCELED),
                            timeout=timeout, interval=2, context=self.log_tail)
        return run_id, status

    def wait_until_swept(self, timeout: float = 300.0) -> None:
        """Until the lake holds exactly the loadable events of PostgreSQL."""
        def compared() -> dict[str, object]:
            with psycopg.connect(self.database_url) as conn:
                expected = sorted(loadable_ids(conn))
            held = sorted(lake_ids(self.lake.events()))
            return {"lake": len(held), "postgres": len(expected), "same": held == expected}

        wait_until(compared, "the lake to hold PostgreSQL's loadable events", until=lambda c: c["same"],
                   timeout=timeout, interval=2, context=self.log_tail)

    def log_tail(self, chars: int = 4_000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def postgres_days(self) -> list[str]:
        """The days of the events in PostgreSQL (the demo's, and any the tests added)."""
        with psycopg.connect(self.database_url) as conn:
            return sorted(days_in_postgres(conn))

    def postgres_day_counts(self, days: Sequence[date]) -> dict[str, int]:
        with psycopg.connect(self.database_url) as conn:
            counts = days_in_postgres(conn)
        return {d.isoformat(): counts.get(d.isoformat(), 0) for d in days}

    def lake_day_counts(self, days: Sequence[date]) -> dict[str, int]:
        return {d.isoformat(): sum(self.lake.day_counts(d).values()) for d in days}

    def drop_lake_days(self, days: Sequence[date]) -> int:
        """Lose those days' rows, in one Delta commit (what a backfill must bring back); returns the lake's version
        after it."""
        events = self.lake.events()
        before = events.version()
        events.delete(days_predicate(days))
        assert events.version() == before + 1 and not any(self.lake_day_counts(days).values())
        assert not any(events.snapshot().day_files(d) for d in days)
        return events.version()


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status == 200


def dev_environment(database_url: str, root: Path) -> dict[str, str]:
    """What ``workdev-pipeline dev`` gives Dagster, the partitions starting at the day of the store's earliest event
    (as ``dev`` does when WORKDEV_PARTITIONS_START is unset)."""
    first = earliest_event_day(database_url)
    return {**os.environ, PARTITIONS_START_ENV: (first or today()).isoformat(),
            "WORKDEV_DATABASE_URL": database_url, "WORKDEV_HOME": str(root / "home"),
            "WORKDEV_LAKE_URI": str(root / "lake"), "DAGSTER_HOME": str(root / "dagster"),
            "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}


def instance_home(env: dict[str, str]) -> Path:
    """The server's instance directory, with its instance file."""
    home = Path(env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def record_first_sweep(database_url: str, root: Path) -> RecordedRun:
    """The first sweep of the store's events, run as the ``ingest_events`` job on the instance the server will use
    (what ``workdev-pipeline sweep`` records): its run, the day partitions it wrote and their checks are in the
    instance before the webserver starts, as after a fresh demo's first sensor tick."""
    env = dev_environment(database_url, root)
    with pytest.MonkeyPatch.context() as patch:  # the server's first day; this process's environment left as it was
        patch.setenv(PARTITIONS_START_ENV, env[PARTITIONS_START_ENV])
        with recording(instance_home(env), database_url, env["WORKDEV_LAKE_URI"]) as runs:
            return runs.run("ingest_events")


def start_dagster_dev(database_url: str, root: Path, *, timeout: float = STARTUP_TIMEOUT,
                      keep_running: set[str] | None = None) -> DevServer:
    """``dagster dev`` (webserver + daemon) on 127.0.0.1 with this database and a lake under ``root``.

    Started through ``env --default-signal=INT,TERM`` so the signals it stops on are not inherited as
    ignored (a background shell ignores SIGINT), in a session of its own so the whole group can be signalled.
    With ``keep_running``, every other schedule and sensor is stopped as soon as the code location loads.
    """
    env = dev_environment(database_url, root)
    home = instance_home(env)
    port = free_port()
    log_path = root / "dagster-dev.log"
    dagster = Path(sys.executable).with_name("dagster")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["env", "--default-signal=INT,TERM", str(dagster), "dev", "-m", "workdev_pipeline.definitions",
             "-h", "127.0.0.1", "-p", str(port)],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = DevServer(process, port, database_url,
                       LakeResource(uri=env["WORKDEV_LAKE_URI"], backoff_seconds=0.01),
                       home, log_path)
    try:
        wait_until(lambda: _answers(f"{server.url}/server_info"), "dagster dev's webserver to answer", timeout=timeout,
                   ignore=(OSError,), context=server.log_tail,
                   gone=lambda: None if process.poll() is None else f"dagster dev exited ({process.returncode})")
        server.location_name = wait_for_code_location(server.url, timeout, context=server.log_tail)
        if keep_running is not None:
            stop_instigators(server.url, keep_running)
    except BaseException:
        stop_dagster_dev(server)
        raise
    return server


def stop_dagster_dev(server: DevServer, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM to the server's process group; SIGKILL if it has not exited within ``timeout``. Once only."""
    if server.stopped:
        return server.process.returncode
    server.stopped = True
    if server.process.poll() is None:
        try:
            os.killpg(server.process.pid, signal.SIGTERM)
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(30)
        except ProcessLookupError:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):  # children left behind: the group goes too
        os.killpg(server.process.pid, signal.SIGKILL)
    return server.process.returncode


_running: list[DevServer] = []
_last_user: list[str] = []


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Remember the last test using ``dagster_dev``: the server stops after it, not at the end of the session
    (its sensor would otherwise tick through every later test)."""
    users = [item.nodeid for item in items if "dagster_dev" in getattr(item, "fixturenames", ())]
    _last_user[:] = users[-1:]


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _last_user and item.nodeid == _last_user[0]:
        while _running:
            stop_dagster_dev(_running.pop())


@pytest.fixture(scope="session")
def dagster_dev(admin_url: str, run_tag: str, template_db: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """``dagster dev`` on a database of its own holding DEMO_DAYS days of demo events, all swept already (a run on
    its instance, before the server starts: the ingest sensor finds nothing pending and launches nothing)."""
    name = f"{run_tag}_dev_{secrets.token_hex(3)}"
    url = create_database(admin_url, name, template=template_db)
    root = tmp_path_factory.mktemp("dagster_dev")
    try:
        demo(url, DEMO_EVENTS, users=DEMO_USERS, days=DEMO_DAYS, seed=23)
        swept = record_first_sweep(url, root)
        assert swept.metadata(ENRICHED_EVENTS)["rows_loaded"].value == DEMO_EVENTS, swept.messages
        # the every-minute metrics schedule and the aggregations' automation would only compete for the
        # 2 cores with the runs under test: only the ingest sensor stays on
        server = start_dagster_dev(url, root, keep_running={"ingest_sensor"})
        _running.append(server)
        try:
            yield server
        finally:
            stop_dagster_dev(server)  # a no-op when it was stopped after its last test
    finally:
        drop_database(admin_url, name)

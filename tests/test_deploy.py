"""The production instance (``deploy/``): Dagster's webserver and daemon as services, their storage in
PostgreSQL. Started the way ``deploy/Procfile`` says, then the way ``deploy/run-services.sh`` does, with
``DAGSTER_HOME`` holding an unchanged copy of ``deploy/dagster.yaml`` whose storage is a fresh test database
(named through the DAGSTER_PG_* variables): a run launched over GraphQL and the ingest sensor's cursor and
ticks are in PostgreSQL, both services stop cleanly on SIGTERM, and after a restart the run history, the
cursor and the ticks are all still there and the sensor carries on from its cursor."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from psycopg.conninfo import conninfo_to_dict

from tests.dagster_dev_server import free_port, graphql, wait_for_code_location
from tests.ingest_helpers import demo, lake_ids, loadable_ids
from tests.waiting import wait_until
from workdev_pipeline.lake import EventLake, LakeLocation

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
STOP_TIMEOUT = 60.0  # seconds a service may take to exit on SIGTERM
WAIT_TIMEOUT = 300.0  # seconds, generous: a wait returns as soon as its condition holds
SENSOR = "ingest_sensor"
T = TypeVar("T")

SENSOR_STATE = """
query Sensor($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { __typename
  ... on Sensor { sensorState { status ticks(limit: 200) { id status timestamp cursor runIds } }
                  sensorType } } }
"""


@pytest.fixture
def storage_db(empty_db: str) -> str:
    """A fresh, empty database for Dagster's own storage (dagster-postgres creates its tables)."""
    return empty_db


def service_environment(db: str, storage_db: str, tmp_path: Path, port: int) -> dict[str, str]:
    storage = conninfo_to_dict(storage_db)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")  # unchanged: storage from the env
    return {**os.environ, "DAGSTER_HOME": str(dagster_home), "DAGSTER_WEBSERVER_PORT": str(port),
            "DAGSTER_PG_HOST": str(storage.get("host") or "127.0.0.1"),
            "DAGSTER_PG_PORT": str(storage.get("port") or 5432),
            "DAGSTER_PG_USER": str(storage.get("user") or "postgres"),
            "DAGSTER_PG_PASSWORD": str(storage.get("password") or ""), "DAGSTER_PG_DB": str(storage["dbname"]),
            "WORKDEV_DATABASE_URL": db, "WORKDEV_LAKE_URI": str(tmp_path / "lake"),
            "WORKDEV_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}


def procfile_commands() -> dict[str, str]:
    entries = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """In a session of its own (a service manager's view), SIGINT/SIGTERM at their defaults."""
    with log.open("ab") as out:
        return subprocess.Popen(["env", "--default-signal=INT,TERM", *command], env=env, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def terminate(process: subprocess.Popen, name: str, logs: Path) -> int:
    """SIGTERM; the process must exit by itself within STOP_TIMEOUT (else it is killed and the test fails)."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        pytest.fail(f"{name} did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM:\n{tail(logs)}")


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL what is left of the service's process group (e.g. a code server its parent left behind)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(30)


def tail(logs: Path, chars: int = 3_000) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(logs.glob("*.log")))


def sensor_state(base_url: str, location: str) -> tuple[str, list[dict]]:
    selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "sensorName": SENSOR}
    sensor = graphql(base_url, SENSOR_STATE, {"selector": selector})["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    return sensor["sensorState"]["status"], sensor["sensorState"]["ticks"]


def cursor_requests(ticks: list[dict]) -> int:
    """The ingest sensor's cursor ({"requests": n}) after its newest tick that stored one."""
    cursors = [t["cursor"] for t in ticks if t["cursor"]]
    return json.loads(cursors[0])["requests"] if cursors else 0


def wait_for(probe: Callable[[], T], what: str, logs: Path, until: Callable[[T], object] = bool,
             timeout: float = WAIT_TIMEOUT) -> T:
    """Until ``until(probe())``; a failure shows the last value seen and the services' logs."""
    return wait_until(probe, what, until=until, timeout=timeout, interval=2, context=lambda: tail(logs))


def test_dagster_yaml_is_the_production_instance(storage_db: str, tmp_path: Path) -> None:
    """The file loads as an instance: PostgreSQL storage of each kind, the queue with its limits."""
    storage = conninfo_to_dict(storage_db)
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    for kind in ("run_storage", "event_log_storage", "schedule_storage"):
        db = config[kind]["config"]["postgres_db"]
        assert config[kind]["module"].startswith("dagster_postgres.")
        assert db["scheme"] == "postgresql+psycopg2"
        assert all(isinstance(db[key], dict) and "env" in db[key]
                   for key in ("hostname", "port", "username", "password", "db_name"))
    limits = config["run_coordinator"]["config"]["tag_concurrency_limits"]
    assert {"key": "dagster/backfill", "limit": 2} in limits
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] > 2  # room beyond the backfills
    assert config["telemetry"] == {"enabled": False}

    env = service_environment(storage_db, storage_db, tmp_path, free_port())
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("DAGSTER_")})
    try:
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 4
            assert instance.get_runs_count() == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert str(storage["dbname"]) == env["DAGSTER_PG_DB"]


def test_systemd_units_start_the_procfile_services(tmp_path: Path) -> None:
    """The units run what the Procfile runs, on 127.0.0.1, and pass ``systemd-analyze verify``."""
    procfile = procfile_commands()
    assert set(procfile) == {"webserver", "daemon"}
    units = {"webserver": DEPLOY / "systemd" / "workdev-webserver.service",
             "daemon": DEPLOY / "systemd" / "workdev-daemon.service"}
    for name, unit in units.items():
        text = unit.read_text()
        exec_start = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
        expected = procfile[name].removeprefix("exec ").replace(".venv/", "/opt/workdev/.venv/")
        expected = expected.replace("deploy/workspace.yaml", "/opt/workdev/deploy/workspace.yaml")
        expected = expected.replace("${DAGSTER_WEBSERVER_PORT:-3000}", "${DAGSTER_WEBSERVER_PORT}")
        assert exec_start == expected
        assert "EnvironmentFile=/etc/workdev/dagster.env" in text and "KillSignal=SIGTERM" in text
    assert "-h 127.0.0.1" in procfile["webserver"]
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in units.values():  # the units as installed in this checkout: paths that exist here
        local = tmp_path / unit.name
        local.write_text(unit.read_text().replace("/opt/workdev", str(REPO)))
        result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
        problems = [line for line in result.stderr.splitlines()
                    if line.strip() and "Documentation" not in line and "/etc/workdev" not in line]
        assert not problems, result.stderr


@pytest.mark.slow
def test_services_keep_runs_and_sensor_state_across_a_restart(db: str, storage_db: str, tmp_path: Path) -> None:
    demo(db, 600, users=60, days=1.0, seed=31)  # pending events: the ingest sensor requests a sweep
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = service_environment(db, storage_db, tmp_path, port)
    logs = tmp_path / "logs"
    logs.mkdir()
    procfile = procfile_commands()
    services = {name: start(["bash", "-c", command], env, logs / f"{name}.log") for name, command in procfile.items()}
    launcher = None
    try:
        # -- first start, as the Procfile runs them ------------------------------------------------------
        location = wait_for_code_location(base_url, context=lambda: tail(logs))
        assert location == "workdev_pipeline"
        # the daemon's sensor ticks, requests a sweep (its cursor counts requests) and the sweep loads everything
        wait_for(lambda: cursor_requests(sensor_state(base_url, location)[1]), "the ingest sensor to request a sweep",
                 logs, until=lambda requests: requests >= 1)
        files = EventLake(LakeLocation.from_env(str(tmp_path / "lake")))
        with psycopg.connect(db) as conn:
            expected = sorted(loadable_ids(conn))
        wait_for(lambda: sorted(lake_ids(files)), "the sensor's sweep to load the events", logs,
                 until=lambda held: held == expected)

        # a run launched over GraphQL, recorded in PostgreSQL
        client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=120)
        run_id = client.submit_job_execution("ingest_events", repository_location_name=location,
                                             tags={"workdev/trigger": "test_deploy"})
        status = wait_for(lambda: client.get_run_status(run_id), f"run {run_id} to finish", logs,
                          until=lambda s: s in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE))
        assert status == DagsterRunStatus.SUCCESS, tail(logs)
        with psycopg.connect(storage_db) as conn:
            runs = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
            ticks_in_pg = conn.execute("SELECT count(*) FROM job_ticks").fetchone()[0]
        assert runs[run_id] == "SUCCESS"
        assert len(runs) >= 2  # the sensor's sweep too
        assert ticks_in_pg >= 1
        _, ticks_before = sensor_state(base_url, location)
        requests_before = cursor_requests(ticks_before)

        # -- SIGTERM: both stop by themselves ------------------------------------------------------------
        for name, process in services.items():
            terminate(process, name, logs)
        for name, process in services.items():
            assert process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), (name, process.returncode)

        # -- restart, through deploy/run-services.sh ------------------------------------------------------
        launcher = start(["bash", str(DEPLOY / "run-services.sh")], env, logs / "run-services.log")
        assert wait_for_code_location(base_url, context=lambda: tail(logs)) == location
        with psycopg.connect(storage_db) as conn:  # every run is still there (those in flight may have moved on)
            after = dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
        assert set(after) >= set(runs) and after[run_id] == "SUCCESS"
        history = graphql(base_url, "query { runsOrError { ... on Runs { results { runId status } } } }")
        assert {"runId": run_id, "status": "SUCCESS"} in history["runsOrError"]["results"]
        status, ticks_after = sensor_state(base_url, location)
        assert status == "RUNNING"
        assert {t["id"] for t in ticks_before} <= {t["id"] for t in ticks_after}  # the tick history survived
        assert cursor_requests(ticks_after) == requests_before  # and so did the cursor
        # the restarted daemon ticks again, carrying on from the stored cursor (new events: a new request)
        demo(db, 100, users=20, days=0.2, seed=32)
        wait_for(lambda: cursor_requests(sensor_state(base_url, location)[1]),
                 "the restarted sensor to continue from its cursor", logs, until=lambda n: n == requests_before + 1)
        assert terminate(launcher, "run-services.sh", logs) == 0
    finally:
        for process in [*services.values(), *([launcher] if launcher else [])]:
            kill_group(process)

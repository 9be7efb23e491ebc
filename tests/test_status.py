"""``workdev-pipeline status`` and the ``pipeline/status`` observation on a healthy, a lagging, a failing and a stuck
pipeline: real PostgreSQL, a real lake, the real sensor recorded in a Dagster instance."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from dagster import DagsterInstance, build_sensor_context
from psycopg.conninfo import conninfo_to_dict

from tests.ingest_helpers import demo, sweep_in_subprocess, wait_until_lock_released
from tests.redshift_standin import RedshiftStandin, redshift_standin  # noqa: F401 (a fixture)
from workdev_pipeline.assets.keys import PIPELINE_STATUS
from workdev_pipeline.cli import main
from workdev_pipeline.errors import WorkdevError
from workdev_pipeline.ingest.ingestor import LOCK_STATEMENT
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource
from workdev_pipeline.schedules.status import status_sensor
from workdev_pipeline.sql_files import query
from workdev_pipeline.status import (
    BlockingTransaction,
    ConsumerLag,
    DeadLetter,
    EngineDelivery,
    Limits,
    PipelineStatus,
    QueuedWork,
    RunningSweep,
    diagnose,
    figures,
    read_status,
)

NO_ENGINES = {"BIGQUERY_ENABLED": "", "REDSHIFT_ENABLED": ""}


def status(db: str, lake: LakeResource, **env: str) -> Result:
    """``workdev-pipeline status`` on the test's database and lake (``env``: limits, engines)."""
    return CliRunner().invoke(main, ["status", "--database-url", db, "--lake-uri", lake.uri],
                              env={**NO_ENGINES, **env}, catch_exceptions=False)


def flat(result: Result) -> str:
    """The output with runs of whitespace as one space (the table's columns are as wide as their widest cell)."""
    return " ".join(result.output.split())


def observe(db: str, lake: LakeResource, instance: DagsterInstance, **engines: object) -> dict:
    """One tick of the status sensor (with the ``engines``' resources), its observation recorded in ``instance`` as
    the daemon does; the metadata the instance holds."""
    resources = {"postgres": PostgresResource(database_url=db), "lake": lake, **engines}
    result = status_sensor(list(engines)).evaluate_tick(build_sensor_context(instance=instance, resources=resources))
    assert not result.run_requests
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    record = instance.fetch_observations(PIPELINE_STATUS, limit=1).records[0]
    return {k: v.value for k, v in record.asset_observation.metadata.items()}


def same_counts(observed: dict, expected: dict[str, int | float]) -> None:
    """The observation holds every figure of ``expected``: counts and versions equal, ages present."""
    assert set(expected) <= set(observed)
    assert {k: observed[k] for k, v in expected.items() if isinstance(v, int)} == \
        {k: v for k, v in expected.items() if isinstance(v, int)}


def test_healthy_after_a_demo_load_and_a_sweep(db: str, lake: LakeResource, instance: DagsterInstance) -> None:
    demo(db, 400)
    assert lake.ingestor(db).sweep().events_loaded == 400
    result = status(db, lake)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("pipeline status: healthy\n")
    assert "0 pending; last sweep" in result.output and "succeeded" in result.output
    assert "version 1" in result.output and "do:" not in result.output

    observed = observe(db, lake, instance)
    assert observed["verdict"] == "healthy" and observed["problems_error"] == 0
    assert observed["lake_pending_events"] == 0 and observed["lake_version"] == 1
    assert observed["dead_letter_events"] == 0 and observed["sweeps_running"] == 0
    found = read_status(db, lake.events(), {})
    same_counts(observed, figures(found, diagnose(found, Limits())))


def test_a_transaction_held_open_makes_the_backlog_lag(db: str, lake: LakeResource,
                                                       instance: DagsterInstance) -> None:
    demo(db, 200)
    lake.ingestor(db).sweep()
    with psycopg.connect(db) as holder:
        holder.execute("SELECT pg_current_xact_id()")  # a transaction with an id, left open
        pid = holder.info.backend_pid
        demo(db, 150, seed=8)  # committed after it began: no sweep may take them while it is open
        assert lake.ingestor(db).sweep().events_loaded == 0
        lagging = status(db, lake, WORKDEV_MAX_PENDING_AGE_SECONDS="0")
        assert lagging.exit_code == 1, lagging.output
        assert lagging.output.startswith("pipeline status: failing (1 error(s), 0 warning(s))")
        assert "ERROR backlog lake: 150 event(s) pending" in lagging.output
        assert f"blocker pid {pid} transaction open" in flat(lagging)
        assert f"do: transaction of process {pid} (idle in transaction)" in lagging.output
        assert f"pg_terminate_backend({pid})" in lagging.output
        assert status(db, lake).exit_code == 0  # within the default limit (5 minutes) it is no problem yet

        with pytest.MonkeyPatch.context() as env:
            env.setenv("WORKDEV_MAX_PENDING_AGE_SECONDS", "0")
            observed = observe(db, lake, instance)
        assert observed["verdict"] == "failing" and observed["problems_error"] == 1
        assert observed["lake_pending_events"] == 150 and observed["lake_oldest_pending_seconds"] > 0
        assert "pg_terminate_backend" in observed["diagnosis"]
        holder.rollback()
    assert lake.ingestor(db).sweep().events_loaded == 150
    healed = status(db, lake, WORKDEV_MAX_PENDING_AGE_SECONDS="0")
    assert healed.exit_code == 0 and healed.output.startswith("pipeline status: healthy"), healed.output


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_engine_fails(db: str, lake: LakeResource) -> None:
    demo(db, 100)
    lake.ingestor(db).sweep()
    redshift = {"REDSHIFT_ENABLED": "true", "REDSHIFT_HOST": "127.0.0.1", "REDSHIFT_PORT": str(_closed_port()),
                "REDSHIFT_DATABASE": "workdev", "REDSHIFT_USER": "workdev", "REDSHIFT_SSL": "false",
                "REDSHIFT_DIALECT": "postgres"}
    result = status(db, lake, **redshift)
    assert result.exit_code == 1, result.output
    assert "redshift never delivered; 2 behind" in flat(result) and "UNREACHABLE" in result.output
    assert "ERROR engine redshift: unreachable (" in result.output
    assert "do: check the REDSHIFT_* settings, credentials and network; then " \
           "`workdev-pipeline deliver --engine redshift`" in result.output
    assert "delivery redshift" not in result.output  # behind for seconds only: within the delivery limit
    unprobed = CliRunner().invoke(main, ["status", "--no-probe", "--database-url", db, "--lake-uri", lake.uri],
                                  env={**NO_ENGINES, **redshift})
    assert unprobed.exit_code == 0 and "redshift" in unprobed.output, unprobed.output
    late = status(db, lake, WORKDEV_MAX_DELIVERY_LAG_SECONDS="0", **redshift)
    assert "ERROR delivery redshift: holds nothing, the lake is at 1" in late.output


def test_an_engine_delivered_and_then_behind(db: str, lake: LakeResource, instance: DagsterInstance,
                                             redshift_standin: RedshiftStandin) -> None:  # noqa: F811
    params = conninfo_to_dict(db)
    user, database = str(params.get("user") or "postgres"), str(params["dbname"])
    redshift = RedshiftWarehouseResource(host=redshift_standin.host, port=redshift_standin.port, database=database,
                                         user=user, ssl=False, dialect="postgres", db_schema="redshift_wh")
    env = {"REDSHIFT_ENABLED": "true", "REDSHIFT_HOST": redshift_standin.host,
           "REDSHIFT_PORT": str(redshift_standin.port), "REDSHIFT_DATABASE": database, "REDSHIFT_USER": user,
           "REDSHIFT_SSL": "false", "REDSHIFT_SCHEMA": "redshift_wh", "REDSHIFT_DIALECT": "postgres"}
    demo(db, 100)
    lake.ingestor(db).sweep()
    fresh = status(db, lake, **env)
    assert fresh.exit_code == 0 and "never delivered; 2 behind for" in fresh.output and "; reachable" in fresh.output
    assert redshift.deliver(db, lake.events()).rows == 100
    delivered = status(db, lake, **env)
    assert delivered.exit_code == 0, delivered.output
    assert "redshift lake version 1, " in flat(delivered) and "(100 rows); reachable" in delivered.output

    demo(db, 30, seed=9)
    lake.ingestor(db).sweep()  # the lake at version 2, redshift still at 1
    behind = status(db, lake, WORKDEV_MAX_DELIVERY_LAG_SECONDS="0", **env)
    assert behind.exit_code == 1, behind.output
    assert "; 1 behind for" in behind.output
    assert "ERROR delivery redshift: holds lake version 1, the lake is at 2" in behind.output
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKDEV_MAX_DELIVERY_LAG_SECONDS", "0")
        observed = observe(db, lake, instance, redshift=redshift)
    assert observed["redshift_delivered_lake_version"] == 1 and observed["lake_version"] == 2
    assert observed["redshift_lake_versions_behind"] == 1 and observed["redshift_seconds_behind_lake"] > 0
    assert observed["redshift_reachable"] == 1 and observed["verdict"] == "failing"
    assert "deliver --engine redshift" in observed["diagnosis"]


def test_a_blocked_lake_leaves_events_pending_and_a_sweep_heals(db: str, lake: LakeResource,
                                                                instance: DagsterInstance) -> None:
    demo(db, 120)
    root = Path(lake.location().root)
    root.parent.mkdir(parents=True, exist_ok=True)
    root.write_text("blocked")  # the lake's location cannot be written: the sweep fails transiently
    assert lake.ingestor(db).sweep().status == "failed"
    result = status(db, lake)
    assert result.exit_code == 1, result.output
    assert "dead letter - empty" in flat(result)  # a transient fault dead-letters nothing
    assert "ERROR load lake: the last load failed" in result.output
    assert ("ERROR backlog lake: 120 event(s) pending because 1 sweep(s) failed transiently (lake file system: "
            "Not a directory)") in result.output
    assert "the ingest sensor retries with backoff, or sweep now with `workdev-pipeline sweep`" in result.output
    observed = observe(db, lake, instance)
    assert observed["lake_pending_events"] == 120 and observed["lake_failed_sweeps"] == 1
    assert observed["verdict"] == "failing"

    root.unlink()
    assert lake.ingestor(db).sweep().status == "loaded"  # the fault gone, the next sweep loads them
    # a day queued for a rebuild, by the statement a rebuild runs first (as a rebuild killed right after leaves it)
    day = lake.events().snapshot().days()[0]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(query("ingest/queue_rebuilds"), {"consumer": "lake", "days": [day], "reason": "test"})
    queued = status(db, lake, WORKDEV_MAX_PENDING_AGE_SECONDS="0")
    assert "dead letter - empty" in flat(queued) and re.search(r"rebuild queue lake 1 day\(s\)", flat(queued))
    assert "WARNING queue rebuild lake: " in queued.output and " day(s) queued for a rebuild" in queued.output
    assert "do: every sweep drains it first: `workdev-pipeline sweep`" in queued.output
    assert lake.ingestor(db).sweep().status in ("idle", "loaded")
    healed = status(db, lake, WORKDEV_MAX_PENDING_AGE_SECONDS="0")
    assert healed.exit_code == 0 and healed.output.startswith("pipeline status: healthy"), healed.output


def test_a_killed_sweep_is_stuck_until_the_next_sweep(db: str, lake: LakeResource) -> None:
    demo(db, 80)
    killed = sweep_in_subprocess(db, Path(lake.uri), crash_at="after_claim")
    assert killed.returncode != 0
    wait_until_lock_released(db)
    stuck = status(db, lake, WORKDEV_STUCK_SWEEP_SECONDS="0")
    assert stuck.exit_code == 1, stuck.output
    assert "sweep 1 claimed" in stuck.output and "NO PROCESS HOLDS ITS LOCK" in stuck.output
    assert "ERROR sweep 1: 'running' for" in stuck.output
    assert "do: `workdev-pipeline sweep` redoes it over the same range, exactly once" in stuck.output

    with psycopg.connect(db, autocommit=True) as sweeper:  # a live process holds the consumer's lock: running
        sweeper.execute(LOCK_STATEMENT.format("pg_advisory_lock"), ("lake",))
        running = status(db, lake, WORKDEV_STUCK_SWEEP_SECONDS="0")
        assert running.exit_code == 0, running.output
        assert "sweep 1 claimed" in running.output and ", running" in running.output
    assert lake.ingestor(db).sweep().events_loaded == 80
    assert status(db, lake, WORKDEV_STUCK_SWEEP_SECONDS="0").exit_code == 0


def test_a_bad_limit_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKDEV_STUCK_SWEEP_SECONDS", "2m")
    with pytest.raises(WorkdevError, match="WORKDEV_STUCK_SWEEP_SECONDS must be a number of seconds >= 0, got '2m'"):
        Limits.from_env()
    monkeypatch.setenv("WORKDEV_STUCK_SWEEP_SECONDS", "-1")
    with pytest.raises(WorkdevError, match="got '-1'"):
        Limits.from_env()
    monkeypatch.setenv("WORKDEV_STUCK_SWEEP_SECONDS", "0")
    assert Limits.from_env().stuck_sweep_seconds == 0


def _status(**parts: object) -> PipelineStatus:
    base: dict[str, object] = {"consumers": [ConsumerLag("lake", 10, 0, None, 5.0)], "running_sweeps": [],
                               "dead_letter": [], "last_loads": [], "engines": [], "queues": [], "blocker": None,
                               "lake_version": 3}
    return PipelineStatus(**{**base, **parts})


def test_diagnosis_rules() -> None:
    limits = Limits(pending_age_seconds=60, stuck_sweep_seconds=60, delivery_lag_seconds=60)
    assert diagnose(_status(), limits) == []
    validation = diagnose(_status(dead_letter=[DeadLetter("lake", "validation", 4, 9.0, 0)]), limits)
    assert [(p.severity, p.subject) for p in validation] == [("warning", "dead letter lake")]
    assert "`workdev-pipeline replay`" in validation[0].advice and "catalog" in validation[0].advice
    # a sweep running under its lock is no problem however long; without it, past the limit, it is stuck
    assert diagnose(_status(running_sweeps=[RunningSweep(7, "lake", 600.0, True)]), limits) == []
    assert diagnose(_status(running_sweeps=[RunningSweep(7, "lake", 30.0, False)]), limits) == []
    assert [p.subject for p in diagnose(_status(running_sweeps=[RunningSweep(7, "lake", 61.0, False)]), limits)] \
        == ["sweep 7"]
    # the backlog's advice names its cause
    lagging = [ConsumerLag("lake", 10, 5, 61.0, 5.0)]
    blocked = diagnose(_status(consumers=lagging, blocker=BlockingTransaction(42, "active", 90.0)), limits)
    assert "pg_terminate_backend(42)" in blocked[0].advice
    assert diagnose(_status(consumers=lagging), limits)[0].advice.startswith("sweep now with `workdev-pipeline sweep`")
    # an engine: behind past the limit, unreachable; one not enabled is only listed
    behind = EngineDelivery("bigquery", True, 1, 10, 100.0, 2, 61.0)
    assert [p.subject for p in diagnose(_status(engines=[behind]), limits)] == ["delivery bigquery"]
    off = EngineDelivery("bigquery", False, 1, 10, 100.0, 2, 900.0, None)
    assert diagnose(_status(engines=[off]), limits) == []
    # queues past the limit are warnings naming the command that drains them; errors come first
    queues = [QueuedWork("rebuild", "lake", 2, 61.0), QueuedWork("refresh", "lake", 9, 61.0)]
    found = diagnose(_status(queues=queues, dead_letter=[DeadLetter("lake", "transient", 1, 1.0, 3)]), limits)
    assert [p.severity for p in found] == ["error", "warning", "warning"]
    assert "`workdev-pipeline sweep`" in found[1].advice and "`workdev-pipeline erase --pending`" in found[2].advice

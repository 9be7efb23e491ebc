"""The Dagster code location: exactly the assets, checks, jobs, sensors and schedules it is meant to have, each
with a description and a group, the jobs selecting what they run, the sensors and schedules on by default, the
remote engines' own set each, and ``Definitions.validate_loadable`` (in process and by ``dagster definitions
validate``) passing. Adding or dropping a definition means updating the expectations here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    RepositoryDefinition,
)
from dagster._core.errors import DagsterInvalidDefinitionError

from workdev_pipeline.definitions import build_definitions, defs
from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource

REPO = Path(__file__).resolve().parent.parent
GROUPS = {"ingestion", "lake", "aggregations", "governance", "metrics", "warehouse", "operations"}
AGGREGATIONS = [f"{store}/event_aggregations_{g}" for store in ("lake", "postgres") for g in ("hourly", "daily",
                                                                                              "weekly")]
ASSETS = {"postgres/platform_events", "pipeline/enriched_events", "pipeline/dead_letter_replay", "lake/platform_events",
          "lake/maintenance", "postgres/platform_metrics_realtime", "postgres/retention_runs",
          "postgres/gdpr_erasure_requests", "pipeline/status", *AGGREGATIONS}
CHECKS = {("lake/platform_events", "reconciles_with_postgres"), ("lake/platform_events", "no_duplicate_event_ids"),
          ("lake/platform_events", "parquet_schema_matches"), ("lake/platform_events", "day_files_decode"),
          ("postgres/platform_events", "pending_backlog_fresh"),
          ("lake/event_aggregations_hourly", "volumes_within_history"),
          ("postgres/retention_runs", "retention_enforced"),
          ("postgres/gdpr_erasure_requests", "erasure_leaves_no_trace"),
          *((f"lake/event_aggregations_{g}", "amount_sums_fit") for g in ("hourly", "daily", "weekly"))}
#: job -> (the assets it materializes, the checks it runs)
JOBS = {
    "ingest_events": ({"pipeline/enriched_events"}, set()),
    "replay_failed_events": (set(), set()),  # operator jobs are op jobs: they record on their assets, never select
    "apply_retention": (set(), set()),  # them (see test_operator_jobs.py)
    "gdpr_erasure": (set(), set()),
    "check_lake_days": (set(), {c for c in CHECKS if c[0] == "lake/platform_events"}),
    "deep_check_lake_days": (set(), {("lake/platform_events", "day_files_decode")}),
    "refresh_metrics": ({"postgres/platform_metrics_realtime"}, set()),
    "cleanup_metrics": (set(), set()),  # an op job
    "lake_maintenance": ({"lake/maintenance"}, set()),
}
#: sensor -> (the job it requests, None for the automation sensor; its minimum interval in seconds)
SENSORS = {"ingest_sensor": ("ingest_events", 30), "gdpr_erasure_requests_sensor": ("gdpr_erasure", 60),
           "aggregations_automation": (None, 30), "pipeline_status_sensor": (None, 60)}
#: schedule -> (cron, the job it runs); all in UTC
SCHEDULES = {"refresh_metrics_every_minute": ("* * * * *", "refresh_metrics"),
             "cleanup_metrics_every_15_minutes": ("*/15 * * * *", "cleanup_metrics"),
             "retention_schedule": ("0 2 * * *", "apply_retention"),
             "lake_maintenance_schedule": ("30 * * * *", "lake_maintenance"),
             "lake_deep_check_schedule": ("40 3 * * *", "deep_check_lake_days")}


def engine_expectations(engine: str) -> tuple[set[str], set[tuple[str, str]], dict, dict]:
    """What one remote engine adds: assets, checks, jobs, sensors."""
    table = f"{engine}/platform_events"
    assets = {f"pipeline/{engine}_delivery", table, *(f"{engine}/event_aggregations_{g}"
                                                     for g in ("hourly", "daily", "weekly"))}
    day_checks = {(table, n) for n in ("reconciles_with_postgres", "no_duplicate_event_ids", "parity_with_lake")}
    checks = day_checks | {(f"{engine}/event_aggregations_{g}", "matches_postgres")
                           for g in ("hourly", "daily", "weekly")}
    jobs = {f"deliver_to_{engine}": ({f"pipeline/{engine}_delivery"}, set()),
            f"check_{engine}_days": (set(), day_checks)}
    return assets, checks, jobs, {f"delivery_sensor_{engine}": (f"deliver_to_{engine}", 30)}


def offline_resources(*engines: str) -> dict[str, object]:
    """Resources that connect to nothing until used: the definitions are built, never run."""
    resources: dict[str, object] = {"postgres": PostgresResource(database_url="postgresql://nobody@127.0.0.1:9/none"),
                                    "lake": LakeResource(uri="/nonexistent/lake")}
    if "bigquery" in engines:
        resources["bigquery"] = BigQueryWarehouseResource(project="p", dataset="d", api_endpoint="http://127.0.0.1:9")
    if "redshift" in engines:
        resources["redshift"] = RedshiftWarehouseResource(host="127.0.0.1", port=9, database="d", user="u")
    return resources


def check_name(key: AssetCheckKey) -> tuple[str, str]:
    return key.asset_key.to_user_string(), key.name


def described(definitions: Definitions) -> tuple[set[str], set[tuple[str, str]], dict, dict, dict]:
    """(assets, checks, jobs, sensors, schedules) of the loaded repository, in the shape of the expectations."""
    Definitions.validate_loadable(definitions)
    repo: RepositoryDefinition = definitions.get_repository_def()
    graph = definitions.resolve_asset_graph()
    specs = list(definitions.resolve_all_asset_specs())
    for spec in specs:  # every asset named, described and grouped
        assert spec.description and spec.group_name in GROUPS, spec.key
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).description, key
    jobs = {job.name: ({k.to_user_string() for k in job.asset_layer.executable_asset_keys},
                       {check_name(k) for k in job.asset_layer.asset_graph.asset_check_keys})
            for job in repo.get_all_jobs() if not job.name.startswith("__ASSET_JOB")}
    sensors = {}
    for sensor in repo.sensor_defs:
        assert sensor.default_status == DefaultSensorStatus.RUNNING, sensor.name
        sensors[sensor.name] = (sensor.job_name if sensor.targets else None, sensor.minimum_interval_seconds)
    schedules = {}
    for schedule in repo.schedule_defs:
        assert schedule.default_status == DefaultScheduleStatus.RUNNING and schedule.execution_timezone == "UTC"
        schedules[schedule.name] = (schedule.cron_schedule, schedule.job_name)
    return ({s.key.to_user_string() for s in specs}, {check_name(k) for k in graph.asset_check_keys}, jobs, sensors,
            schedules)


def test_the_code_location_has_every_definition_and_each_job_selects_what_it_runs() -> None:
    assets, checks, jobs, sensors, schedules = described(build_definitions(offline_resources()))
    assert assets == ASSETS
    assert checks == CHECKS
    assert jobs == JOBS
    assert sensors == SENSORS  # each on by default (checked in ``described``)
    assert schedules == SCHEDULES


def test_the_module_level_definitions_are_the_same_set() -> None:
    """``defs()``, built from the environment (no engine enabled in the tests), is that code location."""
    assert described(defs()) == (ASSETS, CHECKS, JOBS, SENSORS, SCHEDULES)


@pytest.mark.parametrize("engines", [("bigquery",), ("redshift",), ("bigquery", "redshift")])
def test_each_remote_engine_adds_its_own_set(engines: tuple[str, ...]) -> None:
    assets, checks, jobs, sensors = set(ASSETS), set(CHECKS), dict(JOBS), dict(SENSORS)
    for engine in engines:
        more = engine_expectations(engine)
        assets |= more[0]
        checks |= more[1]
        jobs.update(more[2])
        sensors.update(more[3])
    assert described(build_definitions(offline_resources(*engines)))[:4] == (assets, checks, jobs, sensors)


def test_validate_loadable_rejects_a_job_whose_asset_was_dropped() -> None:
    """The validation the tests above rely on is not a formality: a job selecting an asset the definitions lack
    (the ingest job without the asset it materializes) does not load."""
    from workdev_pipeline.assets.ingestion import enriched_events
    from workdev_pipeline.schedules.sensors import ingest_job

    whole = build_definitions(offline_resources())
    without = Definitions(assets=[a for a in whole.assets if a is not enriched_events], jobs=[ingest_job],
                          resources=offline_resources())
    with pytest.raises(DagsterInvalidDefinitionError):
        Definitions.validate_loadable(without)


def test_dagster_definitions_validate_passes() -> None:
    """The CLI's own check of the workspace file ``dagster dev`` loads (and through it the module)."""
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr

"""The Dagster code location: exactly the assets, checks, jobs, sensors and schedules it is meant to have, each
with a description and a group, the jobs selecting what they run, the sensors and schedules on by default, the
remote engines' own set each, and ``Definitions.validate_loadable`` (in process and by ``dagster definitions
validate``) passing. Adding or dropping a definition means updating the expectations here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetSpec,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    RepositoryDefinition,
)
from dagster._core.errors import DagsterInvalidDefinitionError

from workdev_pipeline.assets.keys import LAKE_EVENTS, RENAMED_FROM, lake_aggregations_key
from workdev_pipeline.assets.partitions import daily_partitions
from workdev_pipeline.definitions import build_definitions, defs
from workdev_pipeline.resources.bigquery import BigQueryWarehouseResource
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.redshift import RedshiftWarehouseResource

REPO = Path(__file__).resolve().parent.parent
GROUPS = {"ingestion", "lake", "aggregations", "governance", "metrics", "warehouse", "operations"}
AGGREGATIONS = [f"{store}/{store}_aggregations_{g}" for store in ("lake", "postgres") for g in ("hourly", "daily",
                                                                                                "weekly")]
ASSETS = {"postgres/postgres_events", "pipeline/enriched_events", "pipeline/dead_letter_replay", "lake/lake_events",
          "lake/lake_maintenance", "postgres/platform_metrics_realtime", "postgres/retention_runs",
          "postgres/gdpr_erasure_requests", "pipeline/pipeline_status", *AGGREGATIONS}
CHECKS = {("lake/lake_events", "reconciles_with_postgres"), ("lake/lake_events", "no_duplicate_event_ids"),
          ("lake/lake_events", "parquet_schema_matches"), ("lake/lake_events", "day_files_decode"),
          ("postgres/postgres_events", "pending_backlog_fresh"),
          ("lake/lake_aggregations_hourly", "volumes_within_history"),
          ("postgres/retention_runs", "retention_enforced"),
          ("postgres/gdpr_erasure_requests", "erasure_leaves_no_trace"),
          *((f"lake/lake_aggregations_{g}", "amount_sums_fit") for g in ("hourly", "daily", "weekly"))}
#: job -> (the assets it materializes, the checks it runs)
JOBS = {
    "ingest_events": ({"pipeline/enriched_events"}, set()),
    "replay_failed_events": (set(), set()),  # operator jobs are op jobs: they record on their assets, never select
    "apply_retention": (set(), set()),  # them (see test_operator_jobs.py)
    "gdpr_erasure": (set(), set()),
    "check_lake_days": (set(), {c for c in CHECKS if c[0] == "lake/lake_events"}),
    "rebuild_lake_days": ({"lake/lake_events"}, {c for c in CHECKS if c[0] == "lake/lake_events"}),
    "deep_check_lake_days": (set(), {("lake/lake_events", "day_files_decode")}),
    "refresh_metrics": ({"postgres/platform_metrics_realtime"}, set()),
    "cleanup_metrics": (set(), set()),  # an op job
    "lake_maintenance": ({"lake/lake_maintenance"}, set()),
}
#: sensor -> (the jobs it may request, None for the automation sensor; its minimum interval in seconds)
SENSORS = {"ingest_sensor": ("ingest_events, rebuild_lake_days", 30),
           "gdpr_erasure_requests_sensor": ("gdpr_erasure", 60), "aggregations_automation": (None, 30),
           "pipeline_status_sensor": (None, 60)}
#: schedule -> (cron, the job it runs); all in UTC
SCHEDULES = {"refresh_metrics_every_minute": ("* * * * *", "refresh_metrics"),
             "cleanup_metrics_every_15_minutes": ("*/15 * * * *", "cleanup_metrics"),
             "retention_schedule": ("0 2 * * *", "apply_retention"),
             "lake_maintenance_schedule": ("30 * * * *", "lake_maintenance"),
             "lake_deep_check_schedule": ("40 3 * * *", "deep_check_lake_days")}


def engine_expectations(engine: str) -> tuple[set[str], set[tuple[str, str]], dict, dict]:
    """What one remote engine adds: assets, checks, jobs, sensors."""
    table = f"{engine}/{engine}_events"
    assets = {f"pipeline/{engine}_delivery", table, *(f"{engine}/{engine}_aggregations_{g}"
                                                     for g in ("hourly", "daily", "weekly"))}
    day_checks = {(table, n) for n in ("reconciles_with_postgres", "no_duplicate_event_ids", "parity_with_lake")}
    checks = day_checks | {(f"{engine}/{engine}_aggregations_{g}", "matches_postgres")
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


def assert_catalog_standards(specs: list[AssetSpec]) -> None:
    """Every asset as a newcomer meets it in the catalog: a label (its key's last part, what the asset graph shows)
    no other asset has, owners, kinds, tags ``tier`` and ``pii``, and a code reference to the line defining it; the
    tables a reader relies on with their column schema, table name and freshness policy."""
    labels = Counter(spec.key.path[-1] for spec in specs)
    assert not {label for label, n in labels.items() if n > 1}, labels
    for spec in specs:
        assert spec.owners == ["team:data-platform"], spec.key
        assert spec.kinds, spec.key
        assert spec.tags["tier"] in {"source", "silver", "gold", "operations"} and spec.tags["pii"] in {"true", "false"}
        reference = spec.metadata["dagster/code_references"].code_references[0]
        assert Path(reference.file_path).is_relative_to(REPO / "workdev_pipeline") and reference.line_number > 0
        if spec.key.path[-1].startswith(("lake_events", "lake_aggregations", "postgres_aggregations")):
            assert spec.metadata["dagster/column_schema"].columns, spec.key
            assert spec.metadata["dagster/table_name"] in {"lake.platform_events", "lake.event_aggregations",
                                                           "postgres.event_aggregations"}, spec.key
            assert spec.freshness_policy is not None, spec.key
    by_key = {spec.key: spec for spec in specs}
    assert by_key[LAKE_EVENTS].tags["pii"] == "true" and by_key[LAKE_EVENTS].tags["tier"] == "silver"
    hourly = by_key[lake_aggregations_key("hourly")].tags
    assert (hourly["tier"], hourly["pii"]) == ("gold", "false")


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
    assert_catalog_standards(specs)
    for key in graph.asset_check_keys:
        assert graph.get_check_spec(key).description, key
    jobs = {job.name: ({k.to_user_string() for k in job.asset_layer.executable_asset_keys},
                       {check_name(k) for k in job.asset_layer.asset_graph.asset_check_keys})
            for job in repo.get_all_jobs() if not job.name.startswith("__ASSET_JOB")}
    sensors = {}
    for sensor in repo.sensor_defs:
        assert sensor.default_status == DefaultSensorStatus.RUNNING, sensor.name
        sensors[sensor.name] = (", ".join(t.job_name for t in sensor.targets) or None, sensor.minimum_interval_seconds)
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


def test_the_day_check_jobs_take_a_day_from_the_launchpad() -> None:
    """The jobs of day checks are partitioned by the daily partitions, with no run config of their own: the
    launchpad shows the day picker, the job's Partitions page backfills a range (a run per day)."""
    repo = build_definitions(offline_resources("bigquery", "redshift")).get_repository_def()
    day = daily_partitions.get_first_partition_key()
    for name in ("check_lake_days", "deep_check_lake_days", "check_bigquery_days", "check_redshift_days"):
        job = repo.get_job(name)
        assert job.partitions_def == daily_partitions, name
        assert job.partitioned_config.get_run_config_for_partition_key(day) == {}, name
    assert repo.get_job("ingest_events").partitions_def is None


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


def test_the_ingest_sensor_ticks_every_configured_interval() -> None:
    """WORKDEV_INGEST_INTERVAL_SECONDS sets the ingest sensor's interval in the loaded code location (the others keep
    theirs); a value that is not a whole number of seconds >= 1 stops ``workdev-pipeline dev`` with one line, exit 2,
    before anything starts."""
    script = ("import json\nfrom workdev_pipeline.definitions import defs\n"
              "print(json.dumps({s.name: s.minimum_interval_seconds for s in defs().sensors}))")
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "WORKDEV_INGEST_INTERVAL_SECONDS": "45"},
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        name: 45 if name == "ingest_sensor" else interval for name, (_, interval) in SENSORS.items()}
    cli = Path(sys.executable).with_name("workdev-pipeline")
    for bad in ("0", "abc", "2.5"):
        result = subprocess.run([str(cli), "dev", "--database-url", "postgresql://nobody@127.0.0.1:9/none"],
                                env={**os.environ, "WORKDEV_INGEST_INTERVAL_SECONDS": bad}, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 2, (bad, result.stdout, result.stderr)
        assert result.stderr.strip() == (f"error: WORKDEV_INGEST_INTERVAL_SECONDS must be a whole number of seconds, "
                                         f"at least 1; got '{bad}'"), result.stderr


#: Imported when used, never by loading the code location: each costs a run's start-up 0.1-0.8 s before its sweep
#: reads its first event (bench/README.md, the run start-up). dagster-gcp is no dependency any more.
IMPORTED_ON_USE = ("dagster_gcp", "google.cloud.bigquery", "redshift_connector", "boto3", "duckdb")


def test_loading_the_code_location_imports_no_engine_library() -> None:
    """A run's process loads the code location before its step: with both engines enabled, that imports neither
    the engines' client libraries nor DuckDB."""
    env = {**os.environ, "BIGQUERY_ENABLED": "true", "BIGQUERY_PROJECT_ID": "p", "REDSHIFT_ENABLED": "true",
           "REDSHIFT_HOST": "127.0.0.1"}
    script = ("import json, sys\nfrom workdev_pipeline.definitions import defs\nloaded = defs()\n"
              "assert {'bigquery', 'redshift'} <= set(loaded.resources), loaded.resources\n"
              f"print(json.dumps([m for m in {IMPORTED_ON_USE!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_no_asset_keeps_a_key_from_before_the_renaming() -> None:
    """The keys named in docs/architecture.md's upgrade table are gone from the code location (with every engine),
    and every renamed asset exists under its new key."""
    assets = described(build_definitions(offline_resources("bigquery", "redshift")))[0]
    assert not {old.to_user_string() for old in RENAMED_FROM.values()} & assets
    assert {new.to_user_string() for new in RENAMED_FROM} <= assets
    upgrade_table = (REPO / "docs" / "architecture.md").read_text()
    for new, old in RENAMED_FROM.items():
        assert f"| `{old.to_user_string()}` | `{new.to_user_string()}` |" in upgrade_table, new


def test_code_references_link_to_the_repository_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """With WORKDEV_CODE_URL (and WORKDEV_CODE_REF), each asset links to its file and line in the repository."""
    monkeypatch.setenv("WORKDEV_CODE_URL", "https://github.com/example/workdev-pipeline/")
    monkeypatch.setenv("WORKDEV_CODE_REF", "v2")
    definitions = build_definitions(offline_resources())
    spec = definitions.resolve_assets_def(LAKE_EVENTS).specs_by_key[LAKE_EVENTS]
    (reference,) = spec.metadata["dagster/code_references"].code_references
    assert re.fullmatch(r"https://github\.com/example/workdev-pipeline/tree/v2/workdev_pipeline/assets/lake\.py#L\d+",
                        reference.url), reference.url

    monkeypatch.setenv("WORKDEV_CODE_URL", "https://git.example.com/workdev-pipeline")
    with pytest.raises(ValueError, match="WORKDEV_CODE_URL must be a GitHub or GitLab repository address"):
        build_definitions(offline_resources())

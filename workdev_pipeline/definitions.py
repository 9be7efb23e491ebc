"""The code location ``workdev_pipeline``: ``Definitions`` built when Dagster loads it (``dg dev``, ``dg check defs``,
``dg list defs``, the deploy's webserver and daemon), not at import: the enabled engines are read then."""

from __future__ import annotations

import os

import dagster as dg
from dagster import Definitions, EnvVar

from workdev_pipeline.assets.aggregation_checks import aggregation_checks
from workdev_pipeline.assets.aggregations import aggregation_assets, aggregations_automation
from workdev_pipeline.assets.checks import (
    day_files_decode,
    no_duplicate_event_ids,
    parquet_schema_matches,
    pending_backlog_fresh,
    reconciles_with_postgres,
)
from workdev_pipeline.assets.engines import REMOTE_ENGINES, engine_definitions
from workdev_pipeline.assets.governance import (
    erasure_job,
    erasure_leaves_no_trace,
    erasure_requests,
    retention_enforced,
    retention_job,
    retention_runs,
)
from workdev_pipeline.assets.ingestion import dead_letter_replay, enriched_events, incoming_events, replay_job
from workdev_pipeline.assets.lake import lake_events
from workdev_pipeline.assets.maintenance import lake_maintenance, lake_maintenance_job
from workdev_pipeline.assets.metrics import realtime_metrics
from workdev_pipeline.assets.standards import with_standards
from workdev_pipeline.assets.status import pipeline_status
from workdev_pipeline.assets.volume_checks import volumes_within_history
from workdev_pipeline.engine_settings import remote_engine_resources
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.governance import gdpr_erasure_requests_sensor, retention_schedule
from workdev_pipeline.schedules.integrity import deep_check_job, lake_deep_check_schedule
from workdev_pipeline.schedules.maintenance import lake_maintenance_schedule
from workdev_pipeline.schedules.metrics import (
    cleanup_metrics,
    cleanup_metrics_schedule,
    refresh_metrics_job,
    refresh_metrics_schedule,
)
from workdev_pipeline.schedules.sensors import check_lake_job, ingest_job, ingest_sensor, lake_days_job
from workdev_pipeline.schedules.status import status_sensor
from workdev_pipeline.settings import DATABASE_URL_ENV


def resources() -> dict[str, object]:
    """Resources from the environment: the URL from WORKDEV_DATABASE_URL when set (else the embedded server),
    the lake at WORKDEV_LAKE_URI (else $WORKDEV_HOME/lake, read when a run starts), and the engines enabled by
    BIGQUERY_ENABLED / REDSHIFT_ENABLED (see :mod:`workdev_pipeline.engine_settings`)."""
    postgres = PostgresResource(database_url=EnvVar(DATABASE_URL_ENV)) if os.environ.get(DATABASE_URL_ENV) \
        else PostgresResource()
    lake = LakeResource(geoip_database=os.environ.get("WORKDEV_GEOIP_DATABASE", ""))
    return {"postgres": postgres, "lake": lake, **remote_engine_resources()}


def build_definitions(resource_defs: dict[str, object] | None = None) -> Definitions:
    """Every asset, check, job and sensor, with the given resources (the environment's by default); a remote
    engine's definitions are added when its resource (``bigquery``, ``redshift``) is given, and the lake's sweeps
    register it as an engine ``processed`` waits for."""
    resource_defs = dict(resource_defs if resource_defs is not None else resources())
    lake = resource_defs.get("lake")
    if isinstance(lake, LakeResource):  # the engines its sweeps register: what `processed` waits for
        resource_defs["lake"] = lake.feeding([name for name in REMOTE_ENGINES if name in resource_defs])
    if "lake" in resource_defs:  # what retention and erasure reach: the lake and every enabled engine
        resource_defs.setdefault("warehouses", EnabledWarehouses.from_resources(resource_defs))
    engines = [engine_definitions(name) for name in REMOTE_ENGINES if name in resource_defs]
    return Definitions(
        assets=with_standards([
            incoming_events, enriched_events, dead_letter_replay, lake_events, lake_maintenance, realtime_metrics,
            *aggregation_assets, retention_runs, erasure_requests, pipeline_status,
            *(a for e in engines for a in e.assets)]),
        asset_checks=[reconciles_with_postgres, no_duplicate_event_ids, parquet_schema_matches, day_files_decode,
                      pending_backlog_fresh, retention_enforced, erasure_leaves_no_trace, *aggregation_checks,
                      volumes_within_history,
                      *(c for e in engines for c in e.asset_checks)],
        jobs=[ingest_job, lake_days_job, replay_job, check_lake_job, refresh_metrics_job, cleanup_metrics,
              retention_job, erasure_job, lake_maintenance_job, deep_check_job,
              *(j for e in engines for j in e.jobs)],
        schedules=[refresh_metrics_schedule, cleanup_metrics_schedule, retention_schedule, lake_maintenance_schedule,
                   lake_deep_check_schedule],
        sensors=[ingest_sensor, aggregations_automation, gdpr_erasure_requests_sensor,
                 status_sensor([e.engine for e in engines]),
                 *(s for e in engines for s in e.sensors)],
        resources=resource_defs,
    )


@dg.definitions
def defs() -> Definitions:
    """The definitions of the environment the code location is loaded in."""
    return build_definitions()

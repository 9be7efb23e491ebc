"""Maintenance of the lake's events table (hourly at :30 UTC, see ``schedules/maintenance.py``): the small files the
sweeps leave compacted, old files vacuumed, a checkpoint written and the log cleaned -- each step under the lake
writers' lock (``workdev_pipeline.lake.maintenance``).

Materialized as ``lake/lake_maintenance`` (files, bytes, seconds, the lake version: plotted over time in the UI); the
compacted days of ``lake/lake_events`` are *observed*, not materialized: a compaction keeps every row, and a
materialization would make their aggregations stale for nothing.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetObservation,
    AssetSelection,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
)
from deltalake.exceptions import DeltaError
from pydantic import Field

from workdev_pipeline.assets.keys import LAKE_EVENTS, LAKE_MAINTENANCE
from workdev_pipeline.assets.partitions import partition_exists
from workdev_pipeline.governance.redaction import redact_message
from workdev_pipeline.lake.delivery import delivered_versions
from workdev_pipeline.lake.maintenance import (
    DEFAULT_LOCK_TIMEOUT_SECONDS,
    LakeBusy,
    MaintenanceResult,
    maintain,
)
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource

LAKE_MAINTENANCE_JOB = "lake_maintenance"


class LakeMaintenanceConfig(Config):
    vacuum_retention_hours: float | None = Field(
        default=None, ge=0, description="Files removed from the table are kept this long (readers of older "
                                        "versions, time travel). Unset: the table's "
                                        "delta.deletedFileRetentionDuration (7 days unless set).")
    target_file_mb: int | None = Field(default=None, ge=1,
                                       description="The size compacted files aim at (MiB). Unset: the lake's layout, "
                                                   "files of FILE_ROWS rows in time order (what erasure relies on to "
                                                   "rewrite only the files it touches: docs/lake.md).")
    since_days: int = Field(default=0, ge=0, description="Compact only the days from this many days before today on "
                                                         "(0: every day with small files, late events included).")
    z_order_user_id: bool = Field(default=False, description="Rewrite the compacted days z-ordered by user_id "
                                                             "(measured not to pay for erasure: docs/lake.md).")
    lock_timeout_seconds: float = Field(default=DEFAULT_LOCK_TIMEOUT_SECONDS, ge=0,
                                        description="How long to wait for the lake writers' lock (0: no limit).")


def maintenance_metadata(result: MaintenanceResult, uri: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/uri": MetadataValue.path(uri),
        "files_before": MetadataValue.int(result.files_before),
        "files_after": MetadataValue.int(result.files_after),
        "bytes_before": MetadataValue.int(result.bytes_before),
        "bytes_after": MetadataValue.int(result.bytes_after),
        "seconds": MetadataValue.float(round(result.seconds, 3)),
        "days_compacted": MetadataValue.int(len(result.days_compacted)),
        "files_compacted": MetadataValue.int(result.files_removed),
        "files_vacuumed": MetadataValue.int(result.files_vacuumed),
        "vacuum_retention_hours": MetadataValue.float(result.vacuum_retention_hours),
        "log_files_after": MetadataValue.int(result.log_files_after),
    }
    if result.version is not None:
        meta["lake_version"] = MetadataValue.int(result.version)
    lines = ["| step | seconds |", "|---|---|"] + [f"| {s} | {v:.2f} |" for s, v in result.step_seconds.items()]
    if result.day_files:
        lines += ["", "| day | files before | files after |", "|---|---|---|"]
        lines += [f"| {d} | {b:,} | {a:,} |" for d, (b, a) in sorted(result.day_files.items())]
    lines += ["", f"Lake version {result.version_before} -> {result.version}; checkpoint at "
              f"{result.checkpoint_version}; log files {result.log_files_before:,} -> {result.log_files_after:,}"
              + ("; z-ordered by user_id" if result.z_ordered else "") + "."]
    lines += [f"- {redact_message(n)}" for n in result.notes]
    meta["preview"] = MetadataValue.md("\n".join(lines))
    return meta


@asset(
    key=LAKE_MAINTENANCE,
    deps=[LAKE_EVENTS],
    group_name="lake",
    kinds={"deltalake"},
    description="Maintenance of the lake's events table (hourly at :30 UTC): the days' small sweep files compacted "
                "(optimize.compact) into files of ~128 MiB, removed files vacuumed after the retention, a checkpoint "
                "written and expired log entries cleaned up, each step under the lake writers' lock; the aggregation "
                "table's small files compacted too. Files, bytes, "
                "seconds and the lake version of each run are in the metadata.",
)
def lake_maintenance(context: AssetExecutionContext, config: LakeMaintenanceConfig, postgres: PostgresResource,
                     lake: LakeResource, warehouses: EnabledWarehouses) -> MaterializeResult:
    since = (datetime.now(UTC) - timedelta(days=config.since_days)).date() if config.since_days else None
    with postgres.connection() as conn:  # the log an enabled engine has not delivered yet is kept
        delivered = delivered_versions(conn)
    behind = [delivered[e.engine] for e in warehouses.remote() if e.engine in delivered]  # never: a full load
    try:
        result = maintain(lake.events(), vacuum_retention_hours=config.vacuum_retention_hours,
                          keep_log_from_version=min(behind) if behind else None,
                          database_url=postgres.url(), consumer=lake.consumer,
                          target_size=None if config.target_file_mb is None else config.target_file_mb * 2**20,
                          since=since, z_order=config.z_order_user_id,
                          lock_timeout_seconds=config.lock_timeout_seconds or None)
    except LakeBusy as exc:
        raise Failure(description=redact_message(str(exc))) from None
    context.log.info(result.summary())
    metadata = maintenance_metadata(result, lake.events().uri)
    try:  # the aggregation table gathers a small file per hourly pass; a concurrent rebuild may win: next run
        removed, added, vacuumed = lake.aggregations().compact()
        metadata["aggregation_files_compacted"] = MetadataValue.json({"removed": removed, "added": added,
                                                                      "vacuumed": vacuumed})
    except DeltaError as exc:
        context.log.warning(f"aggregation table not compacted this time: {redact_message(str(exc))}")
    for day, (before, after) in sorted(result.day_files.items()):
        if partition_exists(day):
            context.log_event(AssetObservation(
                asset_key=LAKE_EVENTS, partition=day.isoformat(), description="compacted (same rows, fewer files)",
                metadata={"mode": "compaction", "files_before": MetadataValue.int(before),
                          "files_after": MetadataValue.int(after)}))
    return MaterializeResult(metadata=metadata)


lake_maintenance_job = define_asset_job(
    LAKE_MAINTENANCE_JOB, selection=AssetSelection.assets(LAKE_MAINTENANCE),
    description="Compact the lake's small files, vacuum, checkpoint and clean its log (hourly at :30 UTC).")

"""Asset checks: per day partition, the lake holds exactly PostgreSQL's processed events (by type), no event twice,
files of the declared schema that decode whole (:mod:`workdev_pipeline.assets.day_checks`: each day's verdict
recorded against its day); and the pending backlog is fresh (and why it is not), evaluated on every tick of the
ingest sensor and runnable on demand.

The deep check (every column of every data file of the day decoded) runs with every rebuild of a day (it is one
of the asset's checks), on the files each sweep adds, and daily over the recent days (``schedules/integrity.py``)."""


from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from workdev_pipeline.assets import day_checks
from workdev_pipeline.assets.check_records import record
from workdev_pipeline.assets.day_checks import DECODES, NO_DUPLICATES, RECONCILES, SCHEMA, checked_days
from workdev_pipeline.assets.keys import INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.assets.partitions import daily_partitions
from workdev_pipeline.ingest.backlog import Backlog
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.status import Limits

BACKLOG_CHECK = AssetCheckKey(INCOMING_EVENTS, "pending_backlog_fresh")


@asset_check(asset=LAKE_EVENTS, name=RECONCILES, partitions_def=daily_partitions,
             description="Count by event_type reconciles with PostgreSQL: the day holds exactly the source's "
                         "processed events (swept, not in the dead letter).")
def reconciles_with_postgres(context: AssetCheckExecutionContext, postgres: PostgresResource,
                             lake: LakeResource) -> Iterator[Any]:
    days = checked_days(context, lake)
    yield from record(context, AssetCheckKey(LAKE_EVENTS, RECONCILES), day_checks.unless_damaged(
        days, lake, lambda d: day_checks.reconcile(d, postgres, lake)))


@asset_check(asset=LAKE_EVENTS, name=NO_DUPLICATES, partitions_def=daily_partitions,
             description="No event_id is held twice in the day's partition.")
def no_duplicate_event_ids(context: AssetCheckExecutionContext, lake: LakeResource) -> Iterator[Any]:
    days = checked_days(context, lake)
    yield from record(context, AssetCheckKey(LAKE_EVENTS, NO_DUPLICATES), day_checks.unless_damaged(
        days, lake, lambda d: day_checks.no_duplicates(d, lake)))


@asset_check(asset=LAKE_EVENTS, name=SCHEMA, partitions_def=daily_partitions,
             description="The lake table has the declared schema (the seed's warehouse schema + event_date), and "
                         "every data file of the day has a readable footer holding the rows the log records.")
def parquet_schema_matches(context: AssetCheckExecutionContext, lake: LakeResource) -> Iterator[Any]:
    yield from record(context, AssetCheckKey(LAKE_EVENTS, SCHEMA),
                      day_checks.schema_matches(checked_days(context, lake), lake))


@asset_check(asset=LAKE_EVENTS, name=DECODES, partitions_def=daily_partitions,
             description="Deep: every column of every data file of the day decodes (page checksums verified), so a "
                         "damaged page is found before a reader trips on it. Runs with every rebuild of a day, on "
                         "the files each sweep adds, and daily over the recent days.")
def day_files_decode(context: AssetCheckExecutionContext, lake: LakeResource) -> Iterator[Any]:
    yield from record(context, AssetCheckKey(LAKE_EVENTS, DECODES),
                      day_checks.files_decode(checked_days(context, lake), lake))


def backlog_verdict(backlog: Backlog, limits: Limits) -> AssetCheckResult:
    """Fresh when nothing waits longer than the limit, no sweep failed, no day waits for a rebuild, no enabled engine
    has left an event the lake took undelivered longer than the limit; a non-empty dead letter is a warning."""
    limit = limits.pending_age_seconds
    fresh = backlog.oldest_pending_seconds <= limit
    late = backlog.engines_late(limit)
    healthy = fresh and not late and not backlog.failing and not (backlog.repair_days or backlog.repair_events)
    reasons = backlog.reasons()
    if not fresh:
        reasons.insert(0, f"the oldest pending event waits {backlog.oldest_pending_seconds:,.0f} s (limit "
                          f"{limit:,.0f} s)")
    metadata = {"pending": MetadataValue.int(backlog.pending),
                "oldest_pending_seconds": MetadataValue.float(backlog.oldest_pending_seconds),
                "limit_seconds": MetadataValue.float(limit),
                "dead_letter": MetadataValue.int(backlog.failed),
                "waiting_for_repair": MetadataValue.int(backlog.repair_events),
                "days_queued_for_rebuild": MetadataValue.int(backlog.repair_days),
                "failed_sweep_runs": MetadataValue.int(backlog.failed_runs if backlog.failing else 0),
                "engines_behind": MetadataValue.json({lag.engine: {"events": lag.events,
                                                                   "delivered_version": lag.delivered_version,
                                                                   "oldest_seconds": round(lag.oldest_seconds, 3)}
                                                      for lag in backlog.engines_behind}),
                "why": MetadataValue.text("; ".join(reasons) or "nothing owed")}
    if backlog.failing:
        metadata["last_error_kind"] = MetadataValue.text(backlog.last_error_kind or "")
    return AssetCheckResult(passed=healthy and backlog.failed == 0,
                            severity=AssetCheckSeverity.ERROR if not healthy else AssetCheckSeverity.WARN,
                            description="; ".join(reasons) or None, metadata=metadata)


def backlog_evaluation(backlog: Backlog, limits: Limits) -> AssetCheckEvaluation:
    """The backlog check's evaluation from a reading the ingest sensor took (it reports one every tick)."""
    verdict = backlog_verdict(backlog, limits)
    return AssetCheckEvaluation(asset_key=BACKLOG_CHECK.asset_key, check_name=BACKLOG_CHECK.name,
                                passed=verdict.passed, severity=verdict.severity, description=verdict.description,
                                metadata=verdict.metadata)


@asset_check(asset=INCOMING_EVENTS, description=f"Nothing owed to the lake for long: the oldest pending event waits "
             f"less than WORKDEV_MAX_PENDING_AGE_SECONDS ({Limits().pending_age_seconds:.0f} s by default), no "
             "event is pending because the last sweep failed, no day waits for a rebuild, no enabled engine "
             "(BigQuery, Redshift) has left an event the lake took undelivered for longer than that (each named with "
             "its events), and the dead letter is empty (a warning). Evaluated on every tick of the ingest "
             "sensor (every 30 s), so a lagging pipeline reads red within a minute.")
def pending_backlog_fresh(postgres: PostgresResource, lake: LakeResource) -> AssetCheckResult:
    with postgres.connection() as conn:
        backlog = Backlog.read(conn, lake.consumer)
    return backlog_verdict(backlog, Limits.from_env())

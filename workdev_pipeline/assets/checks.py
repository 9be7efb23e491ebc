"""Asset checks: per day partition, the warehouse holds exactly PostgreSQL's processed events (by type), no
event twice, and files of the declared schema; and the pending backlog is fresh."""


import os
from datetime import UTC, datetime, time, timedelta

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from workdev_pipeline.assets.ingestion import INCOMING_EVENTS, WAREHOUSE_EVENTS
from workdev_pipeline.assets.partitions import daily_partitions, day_of
from workdev_pipeline.resources.local import LocalWarehouseResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.sql_files import query

#: The pending backlog's oldest event may wait this long before the freshness check fails.
MAX_PENDING_AGE_SECONDS = float(os.environ.get("WORKDEV_MAX_PENDING_AGE_SECONDS", "300"))


@asset_check(asset=WAREHOUSE_EVENTS, partitions_def=daily_partitions, blocking=False,
             description="Count by event_type reconciles with PostgreSQL: the day holds exactly the source's "
                         "processed events (swept, not in the dead letter).")
def reconciles_with_postgres(context: AssetCheckExecutionContext, postgres: PostgresResource,
                             warehouse: LocalWarehouseResource) -> AssetCheckResult:
    day = day_of(context.partition_key)
    start = datetime.combine(day, time.min, tzinfo=UTC)
    with postgres.connection() as conn:
        expected = dict(conn.execute(query("ingest/day_counts"), {
            "day_start": start, "day_end": start + timedelta(days=1), "consumer": warehouse.consumer}).fetchall())
    held = warehouse.day_counts(day)
    diff = {t: held.get(t, 0) - expected.get(t, 0) for t in sorted(set(expected) | set(held))
            if held.get(t, 0) != expected.get(t, 0)}
    lines = ["| event_type | postgres | warehouse |", "|---|---|---|"] + [
        f"| {t} | {expected.get(t, 0):,} | {held.get(t, 0):,} |" for t in sorted(set(expected) | set(held))]
    return AssetCheckResult(passed=not diff, metadata={
        "postgres_events": MetadataValue.int(sum(expected.values())),
        "warehouse_events": MetadataValue.int(sum(held.values())),
        "differences": MetadataValue.json(diff),
        "by_type": MetadataValue.md("\n".join(lines)),
        "source_query": MetadataValue.text(f"sql/queries/ingest/day_counts.sql with day {day}")})


@asset_check(asset=WAREHOUSE_EVENTS, partitions_def=daily_partitions,
             description="No event_id is held twice in the day's partition.")
def no_duplicate_event_ids(context: AssetCheckExecutionContext,
                           warehouse: LocalWarehouseResource) -> AssetCheckResult:
    duplicates = warehouse.duplicate_event_ids(day_of(context.partition_key))
    return AssetCheckResult(passed=not duplicates, metadata={
        "duplicates_shown": MetadataValue.int(len(duplicates)),
        "examples": MetadataValue.json([{"event_id": i, "copies": n} for i, n in duplicates])})


@asset_check(asset=WAREHOUSE_EVENTS, partitions_def=daily_partitions,
             description="Every Parquet file of the day has the declared warehouse schema.")
def parquet_schema_matches(context: AssetCheckExecutionContext,
                           warehouse: LocalWarehouseResource) -> AssetCheckResult:
    problems = warehouse.schema_problems(day_of(context.partition_key))
    return AssetCheckResult(passed=not problems, metadata={"problems": MetadataValue.json(problems[:10])})


@asset_check(asset=INCOMING_EVENTS, description=f"The oldest pending event waits less than "
             f"{MAX_PENDING_AGE_SECONDS:.0f} s (WORKDEV_MAX_PENDING_AGE_SECONDS) and nothing sits in the dead letter.")
def pending_backlog_fresh(postgres: PostgresResource, warehouse: LocalWarehouseResource) -> AssetCheckResult:
    with postgres.connection() as conn:
        pending, oldest, failed = conn.execute(query("ingest/pending_backlog"),
                                               {"consumer": warehouse.consumer}).fetchone()
    oldest = oldest or 0.0
    fresh = oldest <= MAX_PENDING_AGE_SECONDS
    return AssetCheckResult(
        passed=fresh and failed == 0,
        severity=AssetCheckSeverity.ERROR if not fresh else AssetCheckSeverity.WARN,
        metadata={"pending": MetadataValue.int(pending), "oldest_pending_seconds": MetadataValue.float(oldest),
                  "dead_letter": MetadataValue.int(failed)})

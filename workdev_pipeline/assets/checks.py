"""Asset checks: per day partition, the lake (or an engine) holds exactly PostgreSQL's processed events (by type), no
event twice, files of the declared schema that decode whole; and the pending backlog is fresh (and why it is not).

A damaged data file makes every lake check fail (never raise), naming the file and the ``rebuild`` that repairs
it. The deep check (every column of every file of the day decoded) runs with every rebuild of a day (it is one of
the asset's checks) and daily over the recent days (``schedules/integrity.py``)."""


from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from workdev_pipeline.assets.keys import INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.assets.partitions import daily_partitions, day_of
from workdev_pipeline.ingest.backlog import Backlog
from workdev_pipeline.lake.integrity import DamagedFile, damaged_files
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.warehouse import Warehouse
from workdev_pipeline.sql_files import query
from workdev_pipeline.status import Limits

#: The pending backlog's oldest event may wait this long before the freshness check fails (as for `status`).
MAX_PENDING_AGE_SECONDS = Limits.from_env().pending_age_seconds


def _days(context: AssetCheckExecutionContext) -> list[date]:
    """The days a check run covers (one partition, or a backfill's range)."""
    return [day_of(key) for key in context.partition_keys]


@asset_check(asset=LAKE_EVENTS, partitions_def=daily_partitions,
             description="Count by event_type reconciles with PostgreSQL: the day holds exactly the source's "
                         "processed events (swept, not in the dead letter).")
def reconciles_with_postgres(context: AssetCheckExecutionContext, postgres: PostgresResource,
                             lake: LakeResource) -> AssetCheckResult:
    days = _days(context)
    return unless_damaged(days, lake, lambda: reconcile(days, postgres, lake))


def unless_damaged(days: list[date], lake: LakeResource, check: Callable[[], AssetCheckResult]) -> AssetCheckResult:
    """``check()``; when it raises and a file of ``days`` is damaged, a failed result naming the files instead (any
    other error is raised)."""
    try:
        return check()
    except Exception:
        damaged = damaged_files(lake.snapshot(), days, deep=True)
        if not damaged:
            raise
        return damaged_result(damaged)


def damaged_result(damaged: list[DamagedFile], **metadata: MetadataValue) -> AssetCheckResult:
    """A failed check naming the damaged files and the command that repairs each day."""
    fixes = sorted({d.fix for d in damaged})
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, metadata={
        **metadata,
        "damaged_files": MetadataValue.json([d.as_metadata() for d in damaged[:50]]),
        "damaged_file_count": MetadataValue.int(len(damaged)),
        "fix": MetadataValue.md("Rewrite the damaged day(s) from PostgreSQL:\n\n" + "\n".join(
            f"    {command}" for command in fixes[:20]))})


def reconcile(days: list[date], postgres: PostgresResource, warehouse: Warehouse) -> AssetCheckResult:
    """The days' counts by event_type in ``warehouse`` against PostgreSQL's processed events of its consumer."""
    lines = ["| day | event_type | postgres | warehouse |", "|---|---|---|---|"]
    differences: dict[str, dict[str, int]] = {}
    totals = [0, 0]
    with postgres.connection() as conn:
        for day in days:
            start = datetime.combine(day, time.min, tzinfo=UTC)
            expected = dict(conn.execute(query("ingest/day_counts"), {
                "day_start": start, "day_end": start + timedelta(days=1), "consumer": warehouse.consumer}).fetchall())
            held = warehouse.day_counts(day)
            totals[0] += sum(expected.values())
            totals[1] += sum(held.values())
            for t in sorted(set(expected) | set(held)):
                lines.append(f"| {day} | {t} | {expected.get(t, 0):,} | {held.get(t, 0):,} |")
                if held.get(t, 0) != expected.get(t, 0):
                    differences.setdefault(day.isoformat(), {})[t] = held.get(t, 0) - expected.get(t, 0)
    return AssetCheckResult(passed=not differences, metadata={
        "postgres_events": MetadataValue.int(totals[0]),
        "warehouse_events": MetadataValue.int(totals[1]),
        "differences": MetadataValue.json(differences),
        "by_type": MetadataValue.md("\n".join(lines[:202])),
        "source_query": MetadataValue.text("sql/queries/ingest/day_counts.sql (day_start, day_end, consumer)")})


@asset_check(asset=LAKE_EVENTS, partitions_def=daily_partitions,
             description="No event_id is held twice in the day's partition.")
def no_duplicate_event_ids(context: AssetCheckExecutionContext,
                           lake: LakeResource) -> AssetCheckResult:
    days = _days(context)
    return unless_damaged(days, lake, lambda: no_duplicates(days, lake))


def no_duplicates(days: list[date], warehouse: Warehouse) -> AssetCheckResult:
    """No event_id held twice on any of ``days``."""
    duplicates = [(day.isoformat(), i, n) for day in days for i, n in warehouse.duplicate_event_ids(day)]
    return AssetCheckResult(passed=not duplicates, metadata={
        "duplicates_shown": MetadataValue.int(len(duplicates)),
        "examples": MetadataValue.json([{"day": d, "event_id": i, "copies": n} for d, i, n in duplicates[:20]])})


@asset_check(asset=LAKE_EVENTS, partitions_def=daily_partitions,
             description="The lake table has the declared schema (the seed's warehouse schema + event_date), and "
                         "every data file of the day has a readable footer holding the rows the log records.")
def parquet_schema_matches(context: AssetCheckExecutionContext,
                           lake: LakeResource) -> AssetCheckResult:
    days = _days(context)
    problems = [p for day in days for p in lake.schema_problems(day)]
    damaged = damaged_files(lake.snapshot(), days, deep=False)
    if damaged:
        return damaged_result(damaged, problems=MetadataValue.json(problems[:10]))
    return AssetCheckResult(passed=not problems, metadata={"problems": MetadataValue.json(problems[:10])})


@asset_check(asset=LAKE_EVENTS, partitions_def=daily_partitions,
             description="Deep: every column of every data file of the day decodes (page checksums verified), so a "
                         "damaged page is found before a reader trips on it. Runs with every rebuild of a day and "
                         "daily over the recent days.")
def day_files_decode(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    days = _days(context)
    snapshot = lake.snapshot()
    damaged = damaged_files(snapshot, days, deep=True)
    files = snapshot.files()
    wanted = set(days)
    checked = sum(1 for d in files.column("event_date").to_pylist() if d in wanted)
    if damaged:
        return damaged_result(damaged, files_checked=MetadataValue.int(checked))
    return AssetCheckResult(passed=True, metadata={"files_checked": MetadataValue.int(checked)})


@asset_check(asset=INCOMING_EVENTS, description=f"Nothing owed to the lake for long: the oldest pending event waits "
             f"less than {MAX_PENDING_AGE_SECONDS:.0f} s (WORKDEV_MAX_PENDING_AGE_SECONDS), no event is pending "
             f"because the last sweep failed, no day waits for a rebuild, and the dead letter is empty (a warning).")
def pending_backlog_fresh(postgres: PostgresResource, lake: LakeResource) -> AssetCheckResult:
    with postgres.connection() as conn:
        backlog = Backlog.read(conn, lake.consumer)
    fresh = backlog.oldest_pending_seconds <= MAX_PENDING_AGE_SECONDS
    healthy = fresh and not backlog.failing and not (backlog.repair_days or backlog.repair_events)
    reasons = backlog.reasons()
    if not fresh:
        reasons.insert(0, f"the oldest pending event waits {backlog.oldest_pending_seconds:,.0f} s")
    metadata = {"pending": MetadataValue.int(backlog.pending),
                "oldest_pending_seconds": MetadataValue.float(backlog.oldest_pending_seconds),
                "dead_letter": MetadataValue.int(backlog.failed),
                "waiting_for_repair": MetadataValue.int(backlog.repair_events),
                "days_queued_for_rebuild": MetadataValue.int(backlog.repair_days),
                "failed_sweep_runs": MetadataValue.int(backlog.failed_runs if backlog.failing else 0),
                "why": MetadataValue.text("; ".join(reasons) or "nothing owed")}
    if backlog.failing:
        metadata["last_error_kind"] = MetadataValue.text(backlog.last_error_kind or "")
    return AssetCheckResult(passed=healthy and backlog.failed == 0,
                            severity=AssetCheckSeverity.ERROR if not healthy else AssetCheckSeverity.WARN,
                            description="; ".join(reasons) or None, metadata=metadata)

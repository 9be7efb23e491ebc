"""The aggregations in each remote engine (BigQuery, Redshift):
``<engine>/<engine>_aggregations_<hourly|daily|weekly>``,
partitioned as the lake's aggregation assets they copy (``lake/lake_aggregations_<type>``, one partition of
it per partition here), in group ``aggregations`` so that the ``aggregations_automation`` sensor evaluates them.

A partition is delivered when its lake partition was materialized since it was last requested -- the hourly
pass at :05, a late event's rebuild, a backfill -- and a failed delivery (the engine down past its retries) is
tried again at the next :05; never while either is in progress. What the lake's aggregations
held before the engine's assets were first evaluated (an engine enabled later) is not sent by itself: backfill the
engine's aggregation assets over that range from the UI (one run per asset: single-run backfills). A delivery
replaces the engine's periods with the rows of the lake's aggregation table (one atomic replace per month of
periods, retried on transient errors; ``workdev_pipeline.aggregations.delivery``). The ``matches_postgres``
check compares the engine's rows with PostgreSQL's ``event_aggregations`` for the partitions checked.
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionsDefinition,
    asset,
    asset_check,
)

from workdev_pipeline.aggregations.amounts import nanos
from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY, Granularity
from workdev_pipeline.assets.aggregations import GROUP, SETTLE_CRON, lake_key
from workdev_pipeline.assets.check_records import checked_windows, record
from workdev_pipeline.assets.keys import engine_aggregations_key
from workdev_pipeline.assets.partitions import closed_daily_partitions, hourly_partitions, weekly_partitions
from workdev_pipeline.sql_files import query

#: Each granularity with the partitions of its lake aggregation asset.
GRANULARITIES: tuple[tuple[Granularity, TimeWindowPartitionsDefinition], ...] = (
    (HOURLY, hourly_partitions), (DAILY, closed_daily_partitions), (WEEKLY, weekly_partitions))


def engine_aggregation_key(engine: str, granularity: Granularity) -> AssetKey:
    return engine_aggregations_key(engine, granularity.name)


def delivery_condition() -> AutomationCondition:
    """Due when the lake's partition was materialized since this one was last requested or materialized, or when its
    last delivery failed (the engine down past its retries) and a ``:05`` tick passed since it was requested -- a
    failed period is tried again once an hour, not every tick; never while either is in progress. No look-back
    window: a late event's rebuild of an old period is delivered too."""
    local_updated = AutomationCondition.any_deps_updated().since_last_handled().with_label("lake_updated")
    retry_failed = (AutomationCondition.execution_failed()
                    & AutomationCondition.cron_tick_passed(SETTLE_CRON, "UTC").since_last_handled()
                    ).with_label(f"failed, retried at {SETTLE_CRON} UTC")
    return ((local_updated | retry_failed)
            & ~AutomationCondition.any_deps_missing()
            & ~AutomationCondition.any_deps_in_progress()
            & ~AutomationCondition.in_progress()).with_label("aggregation_delivery_due")


def _normalised(rows: list[tuple]) -> list[tuple]:
    """Rows of PostgreSQL or an engine in one form (UTC datetimes, ints, Decimals with 9 places) to compare. An
    amount flagged ``amount_overflow`` is what the engine holds for it: NULL (PostgreSQL's exact sum does not fit
    DECIMAL(38, 9); the lake's ``amount_sums_fit`` check fails on it)."""
    def amount(value: Any, overflow: bool | None) -> Decimal | None:
        return None if value is None or overflow else nanos(value)

    return sorted((p.astimezone(UTC), t, c, int(n), int(u), int(s), amount(a, o), o)
                  for p, t, c, n, u, s, a, o in rows)


def engine_aggregation_definitions(engine: str, kinds: set[str]) -> tuple[list[AssetsDefinition],
                                                                          list[AssetChecksDefinition]]:
    """One asset (and its check) per granularity for ``engine`` (its resource key)."""
    assets: list[AssetsDefinition] = []
    checks: list[AssetChecksDefinition] = []
    for granularity, partitions in GRANULARITIES:
        assets.append(_delivery_asset(engine, kinds, granularity, partitions))
        checks.append(_matches_postgres(engine, granularity, partitions))
    return assets, checks


def _delivery_asset(engine: str, kinds: set[str], granularity: Granularity,
                    partitions: TimeWindowPartitionsDefinition) -> AssetsDefinition:
    local = lake_key(granularity)

    @asset(key=engine_aggregation_key(engine, granularity), deps=[AssetDep(local)], partitions_def=partitions,
           backfill_policy=BackfillPolicy.single_run(), group_name=GROUP, kinds=kinds - {"parquet"},
           tags={"engine": engine, "aggregation_type": granularity.name},
           automation_condition=delivery_condition(), required_resource_keys={"lake", engine},
           description=f"The {granularity.name} aggregations in {engine}'s event_aggregations table: the rows of "
                       f"the lake's aggregation table ({'/'.join(local.path)}) of the selected periods, each range "
                       "replaced atomically (idempotent); delivered after every local rebuild of a period.")
    def delivery(context: AssetExecutionContext) -> MaterializeResult:
        window = context.partition_time_window
        resource = getattr(context.resources, engine)
        aggregates = context.resources.lake.aggregations()
        outcome = resource.deliver_aggregations(aggregates, granularity, window.start, window.end)
        context.log.info(f"{engine}: {outcome.rows:,} {granularity.name} rows of {outcome.periods} period(s) in "
                         f"{outcome.loads} load(s), {outcome.seconds:.2f} s")
        by_start = {start.timestamp(): rows for start, rows in outcome.per_period.items()}
        for key in context.partition_keys:  # each period its own rows; the run's totals in ``run``
            rows = by_start.get(partitions.time_window_for_partition_key(key).start.timestamp(), 0)
            context.add_asset_metadata({"rows_loaded": MetadataValue.int(rows),
                                        "dagster/partition_row_count": MetadataValue.int(rows)}, partition_key=key)
        return MaterializeResult(metadata={"engine": MetadataValue.text(engine), "run": MetadataValue.json({
            "range": f"[{window.start.isoformat()}, {window.end.isoformat()})", "rows_loaded": outcome.rows,
            "periods": outcome.periods, "periods_with_rows": outcome.periods_with_rows, "loads": outcome.loads,
            "retries": outcome.retries, "seconds": round(outcome.seconds, 3)})})

    return delivery


def _matches_postgres(engine: str, granularity: Granularity,
                      partitions: TimeWindowPartitionsDefinition) -> AssetChecksDefinition:
    check_key = AssetCheckKey(engine_aggregation_key(engine, granularity), "matches_postgres")

    @asset_check(asset=check_key.asset_key, partitions_def=partitions,
                 name="matches_postgres", required_resource_keys={"postgres", engine},
                 description=f"{engine}'s {granularity.name} rows of the checked periods equal PostgreSQL's "
                             "event_aggregations (events, unique users and sessions, amounts), period by period.")
    def matches(context: AssetCheckExecutionContext) -> Iterator[Any]:
        windows = checked_windows(context, partitions)
        verdicts = {}
        if windows:
            start, end = min(w.start for w in windows.values()), max(w.end for w in windows.values())
            with context.resources.postgres.connection() as conn:
                expected = _by_period(_normalised(conn.execute(query("aggregations/period_rows"), {
                    "aggregation_type": granularity.name, "range_start": start, "range_end": end}).fetchall()))
            held = _by_period(_normalised(getattr(context.resources, engine).aggregation_rows(
                granularity.name, start, end)))
            for key, window in windows.items():
                want, have = expected.get(window.start, set()), held.get(window.start, set())
                missing, extra = sorted(want - have), sorted(have - want)
                verdicts[key] = AssetCheckResult(
                    passed=not missing and not extra,
                    description=None if not missing and not extra else
                    f"{len(missing)} row(s) only in PostgreSQL, {len(extra)} only in {engine}",
                    metadata={
                        "postgres_rows": MetadataValue.int(len(want)), f"{engine}_rows": MetadataValue.int(len(have)),
                        "only_postgres": MetadataValue.int(len(missing)),
                        f"only_{engine}": MetadataValue.int(len(extra)),
                        "examples": MetadataValue.json([{"period_start": r[0].isoformat(), "event_type": r[1],
                                                         "missing_in": where}
                                                        for rows, where in ((missing, engine), (extra, "postgres"))
                                                        for r in rows[:5]])})
        yield from record(context, check_key, verdicts)

    return matches


def _by_period(rows: list[tuple]) -> dict[datetime, set[tuple]]:
    """Normalised rows grouped by their period's start."""
    grouped: dict[datetime, set[tuple]] = {}
    for row in rows:
        grouped.setdefault(row[0], set()).add(row)
    return grouped

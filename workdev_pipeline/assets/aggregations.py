"""Aggregations (group ``aggregations``): per closed UTC hour, day and week (Monday 00:00 UTC), event type and
category, the events, their exact unique users and sessions, and the amounts of financial events -- in
PostgreSQL's ``event_aggregations`` (what ``AnalyticsClient.query_aggregations`` and dashboards read) and in
the lake (``<lake>/event_aggregations``: a Delta table partitioned by ``aggregation_type``).

One multi-asset per granularity computes the periods once from the lake's events (DuckDB over one snapshot of
the days' partitions) and materializes both stores: ``postgres/postgres_aggregations_<type>`` and
``lake/lake_aggregations_<type>``.

Lineage and partition mappings (all ``TimeWindowPartitionMapping``): every aggregation reads the lake's day
partitions holding its periods (an hour -> its day, a day -> itself, a week -> its seven days); and a day comes
after its 24 hours, a week after its seven days (same store). Those last two edges order the work -- a
backfill over a range runs hours, then days, then weeks -- and show which hours make up a day; they carry no
data: days and weeks are computed from the events, since a day's unique users are not the sum of its hours'.

Automation (``aggregation_condition``, evaluated by the ``aggregations_automation`` sensor, running by
default): a period is materialized at the first ``:05`` after it closed -- the 5 minutes are the backlog
freshness bound (``WORKDEV_MAX_PENDING_AGE_SECONDS``, 300 s): by then every event of the period emitted on time
has landed -- and rebuilt, whatever its age, at the first ``:05`` after new events of its days landed in the
lake (every sweep records the day partitions it appended to, every day rebuild its days). So a late
event makes its day's hours, its day and its week stale, and one pass an hour rebuilds them. A period never built
whose events landed, other than the latest closed one, is due at once: a fresh install's first sweep brings its
aggregations on the next sensor tick, not at the next ``:05``.
"""

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AssetSpec,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    BackfillPolicy,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    TimeWindowPartitionsDefinition,
    multi_asset,
)

from workdev_pipeline.aggregations.engine import AggregationOutcome, Aggregator
from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY, Granularity
from workdev_pipeline.assets.keys import LAKE_EVENTS, lake_aggregations_key, postgres_aggregations_key
from workdev_pipeline.assets.partitions import closed_daily_partitions, hourly_partitions, weekly_partitions
from workdev_pipeline.assets.table_metadata import (
    LAKE_AGGREGATIONS_TABLE,
    POSTGRES_AGGREGATIONS_TABLE,
    aggregation_table_metadata,
    lake_aggregation_rows,
)
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.sql_files import query

GROUP = "aggregations"

#: The hourly aggregation pass: 5 minutes past every hour (UTC).
SETTLE_CRON = "5 * * * *"


def postgres_key(granularity: Granularity) -> AssetKey:
    return postgres_aggregations_key(granularity.name)


def lake_key(granularity: Granularity) -> AssetKey:
    return lake_aggregations_key(granularity.name)


def aggregation_condition() -> AutomationCondition:
    """Due when (the period closed, or events of its days landed in the lake) and a ``:05`` tick has passed, both
    since the period was last requested or materialized; or at once when the period was never built, events of its
    days landed, and it is not the latest closed period (a fresh install's first sweep: its history is built right
    after, not at the next ``:05``; the latest period still waits for its late events until ``:05``). Never while
    it or an upstream is being materialized. No look-back window: any period whose days receive events is rebuilt."""
    events_landed = AutomationCondition.any_deps_updated().allow(AssetSelection.assets(LAKE_EVENTS)) \
        .with_label("events_landed")
    closed_or_new_events = (AutomationCondition.newly_missing() | events_landed) \
        .since_last_handled().with_label("closed_or_new_events")
    settled = AutomationCondition.cron_tick_passed(SETTLE_CRON, "UTC").since_last_handled() \
        .with_label(f"settled ({SETTLE_CRON} UTC since last handled)")
    first_build = (AutomationCondition.missing() & ~AutomationCondition.in_latest_time_window()
                   & events_landed.since_last_handled()).with_label("never built, events landed, not the latest")
    return (((closed_or_new_events & settled) | first_build)
            & ~AutomationCondition.any_deps_in_progress()
            & ~AutomationCondition.in_progress()).with_label("aggregation_due")


def aggregation_run_figures(outcome: AggregationOutcome) -> dict[str, Any]:
    """The rebuild's totals as plain values (the ``run`` entry of each of its periods' materializations)."""
    return {"aggregation_type": outcome.aggregation_type,
            "range": f"[{outcome.range_start.isoformat()}, {outcome.range_end.isoformat()})",
            "periods": outcome.periods, "periods_with_events": outcome.periods_with_events,
            "rows_written": outcome.rows_written, "events": outcome.events, "seconds": round(outcome.seconds, 3),
            "read_seconds": round(outcome.read_seconds, 3), "postgres_seconds": round(outcome.postgres_seconds, 3),
            "lake_seconds": round(outcome.lake_seconds, 3), "source_files": outcome.source_files}


def aggregation_metadata(outcome: AggregationOutcome, lake: bool = False) -> dict[str, Any]:
    """What each period of a rebuild carries besides its own figures (:func:`period_metadata`): the events version
    read, the run's totals in one ``run`` entry (in the lake's, also its commits and files) and the run's preview
    (``run_preview``) -- a run of a range shows the same entries on each of its periods."""
    run = aggregation_run_figures(outcome)
    if lake:
        run.update(commits=outcome.lake_commits, files_added=outcome.files_added, files_removed=outcome.files_removed,
                   bytes_written=outcome.bytes_written)
    lines = [f"**{outcome.aggregation_type}** periods from {outcome.range_start:%Y-%m-%d %H:%M} to "
             f"{outcome.range_end:%Y-%m-%d %H:%M} UTC: {outcome.periods_with_events} of {outcome.periods} with "
             f"events, {outcome.rows_written:,} rows, {outcome.events:,} events", "",
             "| period (UTC) | rows | events |", "|---|---|---|"]
    lines += [f"| {p:%Y-%m-%d %H:%M} | {rows:,} | {events:,} |" for p, rows, events in outcome.per_period[:48]]
    if len(outcome.per_period) > 48:
        lines.append(f"| … {len(outcome.per_period) - 48} more | | |")
    if outcome.top_rows:
        lines += ["", "**Busiest rows**", "",
                  "| period | event_type | category | events | unique users | unique sessions | amount |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['period_start']:%Y-%m-%d %H:%M} | {r['event_type']} | {r['event_category']} | "
                  f"{r['total_events']:,} | {r['unique_users']:,} | {r['unique_sessions']:,} | "
                  f"{_money(r['amount_exact'], r['amount_overflow'])} |" for r in outcome.top_rows]
    return {
        **({} if outcome.events_version is None else
           {"events_version": MetadataValue.int(outcome.events_version)}),
        "run": MetadataValue.json(run),
        "run_preview": MetadataValue.md("\n".join(lines)),
    }


def period_metadata(outcome: AggregationOutcome, partitions_def: TimeWindowPartitionsDefinition,
                    keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each period's own figures, by partition key: the rows written and the events they count (0 for a period
    without events); its rows are the partition's row count."""
    by_start = {start.timestamp(): (rows, events) for start, rows, events in outcome.per_period}
    figures = {}
    for key in keys:
        rows, events = by_start.get(partitions_def.time_window_for_partition_key(key).start.timestamp(), (0, 0))
        figures[key] = {"rows_written": MetadataValue.int(rows), "events": MetadataValue.int(events),
                        "dagster/partition_row_count": MetadataValue.int(rows)}
    return figures


def _money(exact: str | None, overflow: bool | None) -> str:
    """The exact amount (its text), rounded to cents for the preview; marked when the lake cannot hold it."""
    return "" if exact is None else f"{Decimal(exact):,.2f}" + (" (overflow)" if overflow else "")


_WHAT = ("per {period}, event type and category: events, exact unique users and sessions (anonymous events "
         "not counted), and for financial types the sum of their amount field (event_schemas.amount_field)")


def _specs(granularity: Granularity, period: str, finer: Granularity | None) -> list[AssetSpec]:
    events = AssetDep(LAKE_EVENTS, partition_mapping=TimeWindowPartitionMapping())
    specs = []
    for key_of, store, kinds, where in (
        (postgres_key, "postgres", {"duckdb", "postgres"}, "PostgreSQL's event_aggregations (aggregation_type "
                                   f"'{granularity.name}'; read by AnalyticsClient.query_aggregations)"),
        (lake_key, "lake", {"deltalake", "duckdb"}, "the lake's Delta table event_aggregations (partition "
                                                    f"aggregation_type='{granularity.name}')"),
    ):
        deps = [events] + ([AssetDep(key_of(finer), partition_mapping=TimeWindowPartitionMapping())]
                           if finer else [])
        specs.append(AssetSpec(
            key_of(granularity), deps=deps, group_name=GROUP, kinds=kinds,
            automation_condition=aggregation_condition(), tags={"aggregation_type": granularity.name},
            metadata=aggregation_table_metadata(store),
            description=f"{granularity.name.capitalize()} aggregations in {where}: " + _WHAT.format(period=period)
                        + ", computed from the lake's events of the " + period + "."))
    return specs


def _aggregation_asset(granularity: Granularity, partitions_def: TimeWindowPartitionsDefinition, period: str,
                       finer: Granularity | None = None) -> AssetsDefinition:
    pg_key, lk_key = postgres_key(granularity), lake_key(granularity)

    @multi_asset(
        name=f"event_aggregations_{granularity.name}",
        specs=_specs(granularity, period, finer),
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(),
        description=f"Recompute the {granularity.name} aggregations of the selected {period}s from the "
                    "lake's events (one snapshot) and replace them in PostgreSQL (delete + insert, one transaction) "
                    "and in the lake (one predicate overwrite commit per chunk of periods).",
    )
    def _asset(context: AssetExecutionContext, postgres: PostgresResource,
               lake: LakeResource) -> Iterator[MaterializeResult]:
        window = context.partition_time_window
        aggregator = Aggregator(lake.events())
        with postgres.connection() as conn:
            outcome = aggregator.rebuild(conn, granularity, window.start, window.end)
            postgres_rows = conn.execute(query("aggregations/stored_rows"),
                                         {"aggregation_type": granularity.name}).fetchone()[0]
        context.log.info(f"{granularity.name}: {outcome.periods} period(s), {outcome.rows_written} rows from "
                         f"{outcome.events} events in {outcome.seconds:.2f} s (read {outcome.read_seconds:.2f} s)")
        lake_rows = lake_aggregation_rows(aggregator.aggregates.table(outcome.lake_version), granularity.name)
        for key, figures in period_metadata(outcome, partitions_def, context.partition_keys).items():
            for asset_key in (pg_key, lk_key):  # each period its own figures
                context.add_asset_metadata(figures, asset_key=asset_key, partition_key=key)
        yield MaterializeResult(asset_key=pg_key, metadata={
            **aggregation_metadata(outcome), "dagster/table_name": POSTGRES_AGGREGATIONS_TABLE,
            "dagster/row_count": MetadataValue.int(postgres_rows)})
        yield MaterializeResult(asset_key=lk_key, metadata={
            **aggregation_metadata(outcome, lake=True), "dagster/table_name": LAKE_AGGREGATIONS_TABLE,
            "dagster/row_count": MetadataValue.int(lake_rows), "dagster/uri": aggregator.aggregates.uri,
            **({} if outcome.lake_version is None else {"lake_version": MetadataValue.int(outcome.lake_version)})})

    return _asset


hourly_aggregations = _aggregation_asset(HOURLY, hourly_partitions, "hour")
daily_aggregations = _aggregation_asset(DAILY, closed_daily_partitions, "day", finer=HOURLY)
weekly_aggregations = _aggregation_asset(WEEKLY, weekly_partitions, "week", finer=DAILY)

aggregation_assets = [hourly_aggregations, daily_aggregations, weekly_aggregations]

aggregations_automation = AutomationConditionSensorDefinition(
    "aggregations_automation",
    target=AssetSelection.groups(GROUP),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates the aggregations' automation conditions every 30 s (running by default, so "
                "`dagster dev` needs no toggle): each closed hour, day and week at the first :05 after it "
                "closes, and again at the first :05 after new events of its days land in the lake; a period never "
                "built (but the latest) as soon as its events land, so a fresh install's first sweep is followed "
                "by its aggregations.",
)

"""The lake's events table, one partition per UTC day: materializing a day (or backfilling a range) rebuilds
exactly those days from PostgreSQL in one Delta commit (a predicate overwrite). Each day's materialization carries
its own rows, bytes, seconds and events per second; the run's totals are in its ``run`` entry."""


from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from workdev_pipeline.assets.keys import ENRICHED_EVENTS, LAKE_EVENTS
from workdev_pipeline.assets.metadata import day_metadata, partitioned_outcome_metadata
from workdev_pipeline.assets.partitions import daily_partitions, day_of
from workdev_pipeline.assets.table_metadata import LAKE_EVENTS_TABLE, lake_rows, lake_table_metadata
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource


@asset(
    key=LAKE_EVENTS,
    deps=[ENRICHED_EVENTS],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="lake",
    kinds={"deltalake", "parquet"},
    metadata=lake_table_metadata(),
    description="The lake's events table: platform_events, a Delta Lake table at WORKDEV_LAKE_URI, partitioned by "
                "event_date (the UTC day of the event timestamp), with the seed's warehouse schema (geo_location "
                "and device_info structs, event_data/metadata JSON text, ingested_at). Sweeps append new events in "
                "one commit each; materializing days rebuilds them whole from PostgreSQL in one predicate "
                "overwrite, idempotently, touching no other day. BigQuery and Redshift load from it.",
)
def lake_events(context: AssetExecutionContext, postgres: PostgresResource, lake: LakeResource) -> MaterializeResult:
    days = [day_of(key) for key in context.partition_keys]
    done = iter(range(1, len(days) + 1))
    outcome = lake.ingestor(postgres.url()).rebuild(days, run_id=context.run.run_id, on_day=lambda day, rows: (
        context.log.info(f"day {day} rebuilt, {rows:,} events ({next(done)}/{len(days)})")))
    context.log.info(f"rebuilt {len(days)} day(s) in lake version {outcome.lake_version}: {outcome.events_loaded} "
                     f"events in {outcome.seconds:.2f} s")
    total, per_day = lake_rows(lake.events().snapshot(outcome.lake_version))
    for key, day in zip(context.partition_keys, days, strict=True):  # each day its own figures
        context.add_asset_metadata({**day_metadata(outcome, day),
                                    "dagster/partition_row_count": MetadataValue.int(per_day.get(day, 0))},
                                   partition_key=key)
    return MaterializeResult(metadata={**partitioned_outcome_metadata(outcome), "dagster/table_name": LAKE_EVENTS_TABLE,
                                       "dagster/row_count": MetadataValue.int(total)})

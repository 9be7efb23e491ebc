"""The warehouse's events table, one partition per UTC day: materializing a day (or backfilling a range)
rebuilds exactly those days from PostgreSQL."""


from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, asset

from workdev_pipeline.assets.ingestion import ENRICHED_EVENTS, WAREHOUSE_EVENTS
from workdev_pipeline.assets.metadata import outcome_metadata
from workdev_pipeline.assets.partitions import daily_partitions, day_of
from workdev_pipeline.resources.local import LocalWarehouseResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.warehouse import Warehouse


@asset(
    key=WAREHOUSE_EVENTS,
    deps=[ENRICHED_EVENTS],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="warehouse",
    kinds={"parquet", "duckdb"},
    tags={"engine": "local"},
    description="platform_events in the local warehouse (the seed's warehouse schema: geo_location and "
                "device_info structs, event_data/metadata JSON, ingested_at), Parquet per UTC day of the event "
                "timestamp. Sweeps append new events to their day; materializing days rebuilds them whole from "
                "PostgreSQL, idempotently, touching no other day.",
)
def warehouse_events(context: AssetExecutionContext, postgres: PostgresResource,
                     warehouse: LocalWarehouseResource) -> MaterializeResult:
    return rebuild_days(context, postgres, warehouse, "local")


def rebuild_days(context: AssetExecutionContext, postgres: PostgresResource, warehouse: Warehouse,
                 engine: str) -> MaterializeResult:
    """Rebuild the run's day partitions (one, or a backfill's range in one run) in ``warehouse``."""
    days = [day_of(key) for key in context.partition_keys]
    done = iter(range(1, len(days) + 1))
    outcome = warehouse.ingestor(postgres.url()).rebuild(days, run_id=context.run.run_id, on_day=lambda day, rows: (
        context.log.info(f"{engine}: day {day} rebuilt, {rows:,} events ({next(done)}/{len(days)})")))
    context.log.info(f"{engine}: rebuilt {len(days)} day(s): {outcome.events_loaded} events in "
                     f"{outcome.seconds:.2f} s")
    return MaterializeResult(metadata=outcome_metadata(outcome, engine))

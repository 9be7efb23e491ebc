"""Ingestion: the incoming events in PostgreSQL (observed), the sweep that validates and enriches them into
the warehouse's day partitions, and the replay of the dead letter."""


from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from workdev_pipeline.assets.metadata import outcome_metadata
from workdev_pipeline.assets.partitions import partition_exists
from workdev_pipeline.ingest.ingestor import LoadOutcome
from workdev_pipeline.resources.local import LocalWarehouseResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.warehouse import Warehouse

INCOMING_EVENTS = AssetKey(["postgres", "platform_events"])
ENRICHED_EVENTS = AssetKey(["pipeline", "enriched_events"])
WAREHOUSE_EVENTS = AssetKey(["warehouse", "platform_events"])

incoming_events = AssetSpec(
    INCOMING_EVENTS,
    group_name="ingestion",
    kinds={"postgres"},
    description="Every platform event, as emitted by emit_platform_event() / AnalyticsClient into PostgreSQL "
                "(platform_event_store). Observed by the ingest sensor: pending backlog and its oldest age.",
)


def _report_day_partitions(context: AssetExecutionContext, outcome: LoadOutcome, table_key: AssetKey,
                           engine: str) -> None:
    """A sweep appends to several day partitions of the warehouse table: record each of them."""
    for day, rows in sorted(outcome.days.items()):
        if partition_exists(day):
            context.log_event(AssetMaterialization(
                asset_key=table_key, partition=day.isoformat(),
                description=f"appended by sweep {outcome.sweep_id}", tags={"workdev/engine": engine},
                metadata={"rows_appended": MetadataValue.int(rows), "sweep_id": MetadataValue.int(outcome.sweep_id),
                          "mode": "append", "engine": engine}))


def sweep_into(context: AssetExecutionContext, postgres: PostgresResource, warehouse: Warehouse,
               table_key: AssetKey, engine: str) -> MaterializeResult:
    """One sweep of ``warehouse`` (what the sweep asset of every engine runs)."""
    outcome = warehouse.ingestor(postgres.url()).sweep(run_id=context.run.run_id)
    context.log.info(f"{engine} sweep {outcome.status}: {outcome.events_loaded} loaded, {outcome.events_failed} "
                     f"failed in {outcome.seconds:.2f} s")
    if outcome.status == "failed":
        raise Failure(description=f"{engine} sweep {outcome.sweep_id} failed; its events are in the dead letter "
                                  "for replay", metadata=outcome_metadata(outcome, engine))
    _report_day_partitions(context, outcome, table_key, engine)
    return MaterializeResult(metadata=outcome_metadata(outcome, engine))


def replay_into(context: AssetExecutionContext, postgres: PostgresResource, warehouse: Warehouse,
                table_key: AssetKey, engine: str) -> MaterializeResult:
    """One replay of ``warehouse``'s dead letter; the days it rebuilt recorded as partitions of ``table_key``."""
    outcome = warehouse.ingestor(postgres.url()).replay(run_id=context.run.run_id)
    for day, rows in sorted(outcome.days.items()):
        if partition_exists(day):
            context.log_event(AssetMaterialization(asset_key=table_key, partition=day.isoformat(),
                                                   tags={"workdev/engine": engine},
                                                   metadata={"rows": MetadataValue.int(rows), "mode": "replay",
                                                             "engine": engine}))
    return MaterializeResult(metadata=outcome_metadata(outcome, engine))


@asset(
    key=ENRICHED_EVENTS,
    deps=[INCOMING_EVENTS],
    group_name="ingestion",
    kinds={"python", "parquet"},
    description="Validated and enriched batches: each sweep takes the events committed since the last one "
                "(commit-order safe, by transaction id), checks each against its type's JSON schema, adds user "
                "role and tenure, device (ua-parser) and geo location (offline database), and appends them to "
                "their day's warehouse partition exactly once. Invalid events go to the dead letter "
                "(event_failures) and never block the batch.",
)
def enriched_events(context: AssetExecutionContext, postgres: PostgresResource,
                    warehouse: LocalWarehouseResource) -> MaterializeResult:
    return sweep_into(context, postgres, warehouse, WAREHOUSE_EVENTS, "local")


@asset(
    key=["pipeline", "dead_letter_replay"],
    deps=[ENRICHED_EVENTS],
    group_name="ingestion",
    kinds={"python"},
    description="Materialize to send the dead letter (failed events) back through once the cause is fixed: "
                "events that pass now are loaded (their days rebuilt, exactly once), the rest stay failed.",
)
def dead_letter_replay(context: AssetExecutionContext, postgres: PostgresResource,
                       warehouse: LocalWarehouseResource) -> MaterializeResult:
    return replay_into(context, postgres, warehouse, WAREHOUSE_EVENTS, "local")

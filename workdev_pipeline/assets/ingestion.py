"""Ingestion: the incoming events in PostgreSQL (observed), the sweep that validates and enriches them into the
lake's day partitions (one Delta commit per sweep), and the replay of the dead letter."""


from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from workdev_pipeline.assets.keys import DEAD_LETTER_REPLAY, ENRICHED_EVENTS, INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.assets.metadata import outcome_metadata
from workdev_pipeline.assets.partitions import partition_exists
from workdev_pipeline.assets.standards import defined_here
from workdev_pipeline.assets.table_metadata import LAKE_EVENTS_TABLE, lake_rows
from workdev_pipeline.ingest.ingestor import LoadOutcome
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource

incoming_events = AssetSpec(
    INCOMING_EVENTS,
    metadata=defined_here(),
    group_name="ingestion",
    kinds={"postgres"},
    description="Every platform event, as emitted by emit_platform_event() / AnalyticsClient into PostgreSQL "
                "(platform_event_store). Observed by the ingest sensor: pending backlog and its oldest age.",
)


def _report_day_partitions(context: AssetExecutionContext, outcome: LoadOutcome, mode: str, lake: LakeResource
                           ) -> None:
    """A sweep or replay writes to several day partitions of the lake table: record each of them, with the day's
    and the table's rows at the version committed (from the Delta log)."""
    total, per_day = lake_rows(lake.events().snapshot(outcome.lake_version)) if outcome.days else (0, {})
    for day, rows in sorted(outcome.days.items()):
        if partition_exists(day):
            metadata = {"rows": MetadataValue.int(rows), "mode": mode, "dagster/table_name": LAKE_EVENTS_TABLE,
                        "dagster/row_count": MetadataValue.int(total),
                        "dagster/partition_row_count": MetadataValue.int(per_day[day])}
            if outcome.sweep_id is not None:
                metadata["sweep_id"] = MetadataValue.int(outcome.sweep_id)
            if outcome.lake_version is not None:
                metadata["lake_version"] = MetadataValue.int(outcome.lake_version)
            context.log_event(AssetMaterialization(asset_key=LAKE_EVENTS, partition=day.isoformat(),
                                                   description=f"{mode} of {rows:,} rows", metadata=metadata))


@asset(
    key=ENRICHED_EVENTS,
    deps=[INCOMING_EVENTS],
    group_name="ingestion",
    kinds={"python", "deltalake"},
    description="Validated and enriched batches: each sweep takes the events committed since the last one "
                "(commit-order safe, by transaction id), checks each against its type's JSON schema, adds user "
                "role and tenure, device (ua-parser) and geo location (offline database), and appends them to "
                "the lake (lake/lake_events) in one Delta commit carrying the sweep id, exactly once. Invalid "
                "events go to the dead letter (event_failures) and never block the batch; a transient fault (the "
                "database restarting, the lake's storage read-only or full) is retried for WORKDEV_RETRY_SECONDS, "
                "then the run fails with its events still pending, for the next sweep.",
)
def enriched_events(context: AssetExecutionContext, postgres: PostgresResource, lake: LakeResource
                    ) -> MaterializeResult:
    outcome = lake.ingestor(postgres.url()).sweep(run_id=context.run.run_id)
    context.log.info(f"sweep {outcome.status}: {outcome.events_loaded} loaded, {outcome.events_failed} failed in "
                     f"{outcome.seconds:.2f} s")
    if outcome.status == "failed":  # transient: nothing dead-lettered, the sensor requests the next sweep (backoff)
        raise Failure(description=f"sweep failed transiently ({outcome.error_kind}) after {outcome.retries + 1} "
                                  f"attempt(s); its events stay pending and the next sweep resumes them",
                      metadata=outcome_metadata(outcome))
    _report_day_partitions(context, outcome, "append", lake)
    return MaterializeResult(metadata=outcome_metadata(outcome))


@asset(
    key=DEAD_LETTER_REPLAY,
    deps=[ENRICHED_EVENTS],
    group_name="ingestion",
    kinds={"python"},
    description="Materialize to send the dead letter (failed events) back through once the cause is fixed: "
                "events that pass now are loaded (their days rebuilt, exactly once), the rest stay failed.",
)
def dead_letter_replay(context: AssetExecutionContext, postgres: PostgresResource,
                       lake: LakeResource) -> MaterializeResult:
    outcome = lake.ingestor(postgres.url()).replay(run_id=context.run.run_id)
    _report_day_partitions(context, outcome, "replay", lake)
    return MaterializeResult(metadata=outcome_metadata(outcome))

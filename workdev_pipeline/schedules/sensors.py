"""The ingest sensor: replaces the seed's every-minute edge function. Every ~30 s it observes the pending
backlog (reported on the incoming-events asset) and requests a sweep run while events are pending and no
sweep is already queued or running."""


import json

from dagster import (
    AssetKey,
    AssetObservation,
    AssetSelection,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from workdev_pipeline.assets.ingestion import ENRICHED_EVENTS, INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.run_queue import OPERATOR_PRIORITY, SWEEP_PRIORITY, in_flight, priority_tags
from workdev_pipeline.sql_files import query

ingest_job = define_asset_job("ingest_events", selection=[ENRICHED_EVENTS],
                              description="One sweep: pending events -> validated, enriched day partitions.")
replay_job = define_asset_job("replay_failed_events", selection=[AssetKey(["pipeline", "dead_letter_replay"])],
                              description="Send the dead letter back through once the cause is fixed.",
                              tags=priority_tags(OPERATOR_PRIORITY))

check_lake_job = define_asset_job(
    "check_lake_days", selection=AssetSelection.checks_for_assets(LAKE_EVENTS),
    description="Run the lake's partition checks for chosen days without rewriting them.")



@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="Requests a sweep while events are pending (replaces the seed's pg_cron + edge function).")
def ingest_sensor(context: SensorEvaluationContext, postgres: PostgresResource,
                  lake: LakeResource) -> SensorResult | SkipReason:
    with postgres.connection() as conn:
        pending, oldest, failed = conn.execute(query("ingest/pending_backlog"),
                                               {"consumer": lake.consumer}).fetchone()
    observation = AssetObservation(asset_key=INCOMING_EVENTS, metadata={
        "pending": MetadataValue.int(pending),
        "oldest_pending_seconds": MetadataValue.float(float(oldest or 0.0)),
        "dead_letter": MetadataValue.int(failed)})
    run_requests, cursor = sweep_requests(context, pending, ingest_job.name, "ingest_sensor", "lake")
    return SensorResult(run_requests=run_requests, asset_events=[observation], cursor=cursor)


def sweep_requests(context: SensorEvaluationContext, pending: int, job_name: str, trigger: str,
                   engine: str) -> tuple[list[RunRequest], str]:
    """A sweep run of ``job_name`` while events are pending and none of its runs is queued or running, and the
    new cursor (it counts the requests: run keys stay unique)."""
    cursor = json.loads(context.cursor) if context.cursor else {"requests": 0}
    run_requests = []
    if pending and not in_flight(context.instance, job_name):
        cursor["requests"] += 1
        run_requests.append(RunRequest(run_key=f"sweep-{cursor['requests']}", tags={
            **priority_tags(SWEEP_PRIORITY), "workdev/trigger": trigger, "workdev/pending": str(pending),
            "workdev/engine": engine}))
    return run_requests, json.dumps(cursor)

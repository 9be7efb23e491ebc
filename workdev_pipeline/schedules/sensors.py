"""The ingest sensor: replaces the seed's every-minute edge function. Every ~30 s (``WORKDEV_INGEST_INTERVAL_SECONDS``,
read when the code location loads) it observes the pending
backlog (reported on the incoming-events asset, with the ``pending_backlog_fresh`` check evaluated from the same
reading: a lagging pipeline reads red within a tick) and requests a sweep run while events are pending (or days wait
for a rebuild) and no sweep is already queued or running -- after a sweep failed transiently, with backoff."""


import json

from dagster import (
    AssetObservation,
    AssetSelection,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    in_process_executor,
    sensor,
)

from workdev_pipeline.assets.checks import backlog_evaluation
from workdev_pipeline.assets.keys import ENRICHED_EVENTS, INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.assets.partitions import daily_checks_config
from workdev_pipeline.ingest.backlog import Backlog
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.run_queue import SWEEP_PRIORITY, in_flight, priority_tags
from workdev_pipeline.settings import INGEST_INTERVAL_ENV, ingest_interval_seconds
from workdev_pipeline.status import Limits

# One step each, run inside the run's worker process (in_process_executor), not in a child of it: a killed run
# takes its sweep along (the next run redoes it exactly once) instead of leaving an orphaned step that finishes the
# sweep and reports success inside a run marked failed -- and a run starts one Python process fewer.
ingest_job = define_asset_job("ingest_events", selection=[ENRICHED_EVENTS], executor_def=in_process_executor,
                              description="One sweep: pending events -> validated, enriched day partitions.")

check_lake_job = define_asset_job(
    "check_lake_days", selection=AssetSelection.checks_for_assets(LAKE_EVENTS), config=daily_checks_config(),
    description="Run the lake's per-day checks for chosen days without rewriting them: a day (the launchpad's "
                "partition picker), a range (a backfill from the job's Partitions page: a run per day; or one run "
                "with the dagster/asset_partition_range_start and _end tags), or, given none, every day the lake "
                "holds; each day's verdict is recorded against its day.")

lake_days_job = define_asset_job(
    "rebuild_lake_days", selection=AssetSelection.assets(LAKE_EVENTS),
    description="Rebuild chosen days of the lake from PostgreSQL and run their checks: a day (the launchpad's "
                "partition picker) or a range (a backfill: one run, one Delta commit). Among the ingest sensor's jobs: "
                "the sensor's sweeps write the lake's days, so the lake table's page lists the sensor as its "
                "automation.")


@sensor(jobs=[ingest_job, lake_days_job], minimum_interval_seconds=ingest_interval_seconds(),
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Every {INGEST_INTERVAL_ENV} (30 s by default): requests a sweep while events are pending or "
                    "days wait for a rebuild (replaces the seed's pg_cron + edge function); after a sweep failed "
                    "transiently, with backoff (30 s doubling per failed run, at most 10 minutes). Every tick it "
                    "observes the backlog and evaluates its pending_backlog_fresh check.")
def ingest_sensor(context: SensorEvaluationContext, postgres: PostgresResource,
                  lake: LakeResource) -> SensorResult | SkipReason:
    with postgres.connection() as conn:
        backlog = Backlog.read(conn, lake.consumer)
    retry_in = backlog.retry_in()
    metadata = {"pending": MetadataValue.int(backlog.pending),
                "oldest_pending_seconds": MetadataValue.float(backlog.oldest_pending_seconds),
                "dead_letter": MetadataValue.int(backlog.failed),
                "waiting_for_repair": MetadataValue.int(backlog.repair_events)}
    if backlog.failing:
        metadata["last_error_kind"] = MetadataValue.text(backlog.last_error_kind or "")
        metadata["next_sweep_in_seconds"] = MetadataValue.float(round(retry_in, 1))
    observation = AssetObservation(asset_key=INCOMING_EVENTS, metadata=metadata)
    wanted = (backlog.owed or backlog.repair_days) if backlog.sweep_wanted and retry_in <= 0 else 0
    run_requests, cursor = sweep_requests(context, wanted, ingest_job.name, "ingest_sensor", "lake")
    return SensorResult(run_requests=run_requests, cursor=cursor,
                        asset_events=[observation, backlog_evaluation(backlog, Limits.from_env())])


def sweep_requests(context: SensorEvaluationContext, pending: int, job_name: str, trigger: str,
                   engine: str) -> tuple[list[RunRequest], str]:
    """A sweep run of ``job_name`` while events are pending and none of its runs is queued or running, and the
    new cursor (it counts the requests: run keys stay unique)."""
    cursor = json.loads(context.cursor) if context.cursor else {"requests": 0}
    run_requests = []
    if pending and not in_flight(context.instance, job_name):
        cursor["requests"] += 1
        run_requests.append(RunRequest(run_key=f"sweep-{cursor['requests']}", job_name=job_name, tags={
            **priority_tags(SWEEP_PRIORITY), "workdev/trigger": trigger, "workdev/pending": str(pending),
            "workdev/engine": engine}))
    return run_requests, json.dumps(cursor)

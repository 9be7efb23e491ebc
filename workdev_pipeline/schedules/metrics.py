"""The seed's pg_cron entries for the dashboard: figures every minute, cleanup of expired ones every 15."""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    job,
    schedule,
)

from workdev_pipeline.assets.metrics import cleanup_expired_metrics, realtime_metrics
from workdev_pipeline.schedules.run_queue import (
    LANE_TAG,
    METRICS_LANE,
    METRICS_PRIORITY,
    in_flight,
    priority_tags,
)

refresh_metrics_job = define_asset_job("refresh_metrics", selection=[realtime_metrics.key],
                                       description="Recompute the dashboard's real-time figures.",
                                       tags={**priority_tags(METRICS_PRIORITY), LANE_TAG: METRICS_LANE})


@job(description="Remove expired dashboard figures (a maintenance task: it produces no asset).")
def cleanup_metrics() -> None:
    cleanup_expired_metrics()


@schedule(name="refresh_metrics_every_minute", job=refresh_metrics_job, cron_schedule="* * * * *",
          execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
          description="Every minute (the seed's every-minute stream also refreshed the metrics), skipped while a "
                      "refresh is still queued or running: refreshes never pile up in front of the sweeps.")
def refresh_metrics_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    if in_flight(context.instance, refresh_metrics_job.name):
        return SkipReason("a metrics refresh is still queued or running")
    return RunRequest()

cleanup_metrics_schedule = ScheduleDefinition(
    name="cleanup_metrics_every_15_minutes", job=cleanup_metrics, cron_schedule="*/15 * * * *",
    execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
    description="The seed's cleanup-metrics pg_cron job.")

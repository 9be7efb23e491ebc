"""The seed's pg_cron entries for the dashboard: figures every minute, cleanup of expired ones every 15."""

from dagster import DefaultScheduleStatus, ScheduleDefinition, define_asset_job, job

from workdev_pipeline.assets.metrics import cleanup_expired_metrics, realtime_metrics

refresh_metrics_job = define_asset_job("refresh_metrics", selection=[realtime_metrics.key],
                                       description="Recompute the dashboard's real-time figures.")


@job(description="Remove expired dashboard figures (a maintenance task: it produces no asset).")
def cleanup_metrics() -> None:
    cleanup_expired_metrics()


refresh_metrics_schedule = ScheduleDefinition(
    name="refresh_metrics_every_minute", job=refresh_metrics_job, cron_schedule="* * * * *",
    execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
    description="Every minute (the seed's every-minute stream also refreshed the metrics).")

cleanup_metrics_schedule = ScheduleDefinition(
    name="cleanup_metrics_every_15_minutes", job=cleanup_metrics, cron_schedule="*/15 * * * *",
    execution_timezone="UTC", default_status=DefaultScheduleStatus.RUNNING,
    description="The seed's cleanup-metrics pg_cron job.")

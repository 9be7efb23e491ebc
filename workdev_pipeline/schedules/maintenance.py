"""The lake's maintenance schedule: every hour at :30 UTC (between the sensor's sweeps, away from the aggregations'
hourly :05 and retention's 02:00)."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from workdev_pipeline.assets.maintenance import lake_maintenance_job

LAKE_MAINTENANCE_CRON = "30 * * * *"

lake_maintenance_schedule = ScheduleDefinition(
    name="lake_maintenance_schedule",
    job=lake_maintenance_job,
    cron_schedule=LAKE_MAINTENANCE_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every hour at :30 UTC: compact the lake's small sweep files, vacuum, write a checkpoint and clean "
                "the log (a day of ~2,880 thirty-second sweeps ends as a handful of files).",
)

"""The retention schedule: replaces the seed's ``cron.schedule('apply-retention', '0 2 * * *', ...)``."""


from datetime import UTC, datetime

from dagster import DefaultScheduleStatus, RunConfig, RunRequest, ScheduleEvaluationContext, schedule

from workdev_pipeline.assets.governance import RETENTION_OP, RetentionConfig, retention_job

RETENTION_CRON = "0 2 * * *"


@schedule(job=retention_job, cron_schedule=RETENTION_CRON, execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description="Every day at 02:00 UTC: apply the retention policy as of the tick's time (a late or re-run "
                      "tick removes exactly what the 02:00 one would have), then check nothing expired remains.")
def retention_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    tick = context.scheduled_execution_time or datetime.now(UTC)
    as_of = tick.astimezone(UTC).replace(microsecond=0)
    return RunRequest(
        run_key=f"retention-{as_of:%Y-%m-%d}",
        run_config=RunConfig(ops={RETENTION_OP: RetentionConfig(as_of=as_of.isoformat())}),
        tags={"workdev/trigger": "retention_schedule", "workdev/as_of": as_of.isoformat()},
    )

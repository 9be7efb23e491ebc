"""The retention schedule (replaces the seed's ``cron.schedule('apply-retention', '0 2 * * *', ...)``) and the
sensor that runs filed erasure requests."""


from datetime import UTC, datetime

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    schedule,
    sensor,
)

from workdev_pipeline.assets.governance import (
    ERASURE_OP,
    RETENTION_OP,
    ErasureConfig,
    RetentionConfig,
    erasure_job,
    retention_job,
)
from workdev_pipeline.governance.erasure import open_request_ids
from workdev_pipeline.resources.postgres import PostgresResource

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
        run_config=RunConfig(ops={RETENTION_OP: RetentionConfig(as_of=as_of.isoformat(),
                                                                      reason="the daily retention schedule")}),
        tags={"workdev/trigger": "retention_schedule", "workdev/as_of": as_of.isoformat()},
    )


# by name: a sensor holding an op job that needs resources is rebuilt by Dagster at load, printing a BetaWarning
@sensor(job_name=erasure_job.name, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Every minute: files requests for the users the seed's GDPR statement anonymised through the "
                    "platform_events view, and launches a gdpr_erasure run for the open requests (by request id: "
                    "no user id reaches run config or tags).")
def gdpr_erasure_requests_sensor(context: SensorEvaluationContext,
                                 postgres: PostgresResource) -> RunRequest | SkipReason:
    ids = open_request_ids(postgres.url())
    if not ids:
        return SkipReason("no open erasure request")
    label = ",".join(map(str, ids))
    return RunRequest(run_key=f"erasure-{label}",
                      run_config=RunConfig(ops={ERASURE_OP: ErasureConfig(request_ids=ids, reason="requests filed")}),
                      tags={"workdev/trigger": "gdpr_erasure_requests_sensor", "workdev/erasure_requests": label})

"""The daily deep check of the lake: every column of every data file of the recent days decoded (the
``day_files_decode`` check, which also runs with every rebuild of a day), one run per day partition."""

import os
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from workdev_pipeline.assets.checks import day_files_decode
from workdev_pipeline.assets.partitions import daily_checks_config, partition_exists

#: 03:40 UTC: after retention (02:00), between the maintenance (:30) and the aggregations (:05) of the hour.
DEEP_CHECK_CRON = "40 3 * * *"
#: How many days back from the tick's (included) the daily deep check covers.
DEEP_CHECK_DAYS = int(os.environ.get("WORKDEV_DEEP_CHECK_DAYS", "7"))

deep_check_job = define_asset_job(
    "deep_check_lake_days", selection=AssetSelection.checks(day_files_decode), config=daily_checks_config(),
    description="Decode every column of every data file of a day of the lake (fails naming damaged files and the "
                "rebuild that repairs them); the day from the launchpad's partition picker, a range by a backfill "
                "from the job's Partitions page.")


@schedule(job=deep_check_job, cron_schedule=DEEP_CHECK_CRON, execution_timezone="UTC",
          default_status=DefaultScheduleStatus.RUNNING,
          description=f"Every day at 03:40 UTC: the deep check of the lake's last {DEEP_CHECK_DAYS} days (the tick's "
                      "day included), one run per day.")
def lake_deep_check_schedule(context: ScheduleEvaluationContext) -> list[RunRequest]:
    tick = (context.scheduled_execution_time or datetime.now(UTC)).astimezone(UTC)
    days = [tick.date() - timedelta(days=n) for n in range(DEEP_CHECK_DAYS)]
    return [RunRequest(run_key=f"deep-check-{day.isoformat()}-{tick:%Y%m%d}", partition_key=day.isoformat(),
                       tags={"workdev/trigger": "lake_deep_check_schedule"})
            for day in sorted(days) if partition_exists(day)]

"""The shared partitions, all UTC: days of the event's timestamp (the warehouses' partitions), and the closed
hours, days and weeks (Monday 00:00 UTC) of the aggregations, from the first day read when the code location loads
(:mod:`workdev_pipeline.partitions_start`: ``WORKDEV_PARTITIONS_START``). The aggregations keep one partition per
hour -- a closed hour is the unit their automation builds at :05 and the volume check judges -- which is 24 a day
from that first day, not from an arbitrary epoch: a demo's week is ~190 hourly partitions, a year of data 8,760."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from dagster import (
    DailyPartitionsDefinition,
    HourlyPartitionsDefinition,
    PartitionedConfig,
    WeeklyPartitionsDefinition,
)

from workdev_pipeline.partitions_start import partitions_start

#: First day a partition (and so a backfill from the UI) exists for.
PARTITIONS_START = partitions_start().isoformat()

#: Today's partition exists from the day's start (end_offset=1): events land in it as they arrive.
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1,
                                             fmt="%Y-%m-%d")

# The aggregations' periods: only closed ones are partitions (end_offset=0), so a period's partition appears
# when the period ends -- the moment its aggregation may be computed. Keys: "2026-11-23-14:00" (hours),
# "2026-11-23" (days), "2026-11-23" (weeks, by their Monday; the first week is the first Monday on or after
# the start).
hourly_partitions = HourlyPartitionsDefinition(
    start_date=datetime.combine(date.fromisoformat(PARTITIONS_START), time(), tzinfo=UTC), timezone="UTC", end_offset=0)
closed_daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0,
                                                    fmt="%Y-%m-%d")
weekly_partitions = WeeklyPartitionsDefinition(start_date=PARTITIONS_START, day_offset=1, timezone="UTC",
                                               end_offset=0, fmt="%Y-%m-%d")


def day_of(partition_key: str) -> date:
    return date.fromisoformat(partition_key)


def partition_exists(day: date) -> bool:
    """Whether ``day`` has a partition (events dated before the start or in the future have none)."""
    return daily_partitions.has_partition_key(day.isoformat())


def daily_checks_config() -> PartitionedConfig:
    """The config of a job of day checks (``check_lake_days``, ``check_<engine>_days``, ``deep_check_lake_days``):
    partitioned by the daily partitions, with no run config of its own. The launchpad shows the day picker, the
    job's Partitions page backfills a range (a run per day), a schedule requests a day by ``partition_key``."""
    return PartitionedConfig(partitions_def=daily_partitions, run_config_for_partition_key_fn=_no_run_config)


def _no_run_config(_partition_key: str) -> dict:
    return {}

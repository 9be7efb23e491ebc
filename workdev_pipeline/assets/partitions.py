"""The shared partitions, all UTC: days of the event's timestamp (the warehouses' partitions), and the closed
hours, days and weeks (Monday 00:00 UTC) of the aggregations."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime

from dagster import DailyPartitionsDefinition, HourlyPartitionsDefinition, WeeklyPartitionsDefinition

#: First day a backfill can target; events older than it (7-year retention) need an earlier start.
PARTITIONS_START = os.environ.get("WORKDEV_PARTITIONS_START", "2020-01-01")

#: Today's partition exists from the day's start (end_offset=1): events land in it as they arrive.
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1,
                                             fmt="%Y-%m-%d")

# The aggregations' periods: only closed ones are partitions (end_offset=0), so a period's partition appears
# when the period ends -- the moment its aggregation may be computed. Keys: "2026-11-23-14:00" (hours),
# "2026-11-23" (days), "2026-11-23" (weeks, by their Monday; the first week is the first Monday on or after
# the start).
hourly_partitions = HourlyPartitionsDefinition(start_date=datetime.fromisoformat(PARTITIONS_START).replace(tzinfo=UTC),
                                               timezone="UTC", end_offset=0)
closed_daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=0,
                                                    fmt="%Y-%m-%d")
weekly_partitions = WeeklyPartitionsDefinition(start_date=PARTITIONS_START, day_offset=1, timezone="UTC",
                                               end_offset=0, fmt="%Y-%m-%d")


def day_of(partition_key: str) -> date:
    return date.fromisoformat(partition_key)


def partition_exists(day: date) -> bool:
    """Whether ``day`` has a partition (events dated before the start or in the future have none)."""
    return daily_partitions.has_partition_key(day.isoformat())

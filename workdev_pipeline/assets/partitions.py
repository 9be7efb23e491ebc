"""The shared partitions: UTC days of the event's timestamp (the warehouses' partitions)."""

from __future__ import annotations

import os
from datetime import date

from dagster import DailyPartitionsDefinition

#: First day a backfill can target; events older than it (7-year retention) need an earlier start.
PARTITIONS_START = os.environ.get("WORKDEV_PARTITIONS_START", "2020-01-01")

#: Today's partition exists from the day's start (end_offset=1): events land in it as they arrive.
daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC", end_offset=1,
                                             fmt="%Y-%m-%d")


def day_of(partition_key: str) -> date:
    return date.fromisoformat(partition_key)


def partition_exists(day: date) -> bool:
    """Whether ``day`` has a partition (events dated before the start or in the future have none)."""
    return daily_partitions.has_partition_key(day.isoformat())

"""The aggregations' amount check: ``amount_sums_fit`` on each ``lake/lake_aggregations_<type>`` asset.

A period's amount is exact everywhere or flagged, never silently wrong: PostgreSQL's ``event_aggregations`` holds the
exact sum (``numeric``, unbounded); the lake's table and the engines hold DECIMAL(38, 9), and a sum that does not
fit is NULL there with ``amount_overflow`` true (``workdev_pipeline/aggregations/amounts.py``). The check fails when
a checked period holds such a row: its amount is missing in the lake and the engines.
"""

from datetime import datetime

import pyarrow.compute as pc
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    MetadataValue,
    TimeWindowPartitionsDefinition,
    asset_check,
)

from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY, Granularity
from workdev_pipeline.assets.aggregations import lake_key
from workdev_pipeline.assets.partitions import closed_daily_partitions, hourly_partitions, weekly_partitions
from workdev_pipeline.resources.lake import LakeResource

#: Rows named in a failed check's metadata at most.
EXAMPLES = 20


def _window(context: AssetCheckExecutionContext,
            partitions: TimeWindowPartitionsDefinition) -> tuple[datetime, datetime]:
    """[start, end) of the checked partitions."""
    keys = list(context.partition_keys)
    return (partitions.time_window_for_partition_key(keys[0]).start,
            partitions.time_window_for_partition_key(keys[-1]).end)


def _amount_sums_fit(granularity: Granularity, partitions: TimeWindowPartitionsDefinition) -> AssetChecksDefinition:
    @asset_check(asset=lake_key(granularity), partitions_def=partitions, name="amount_sums_fit",
                 description=f"Every {granularity.name} amount of the checked periods fits DECIMAL(38, 9): no row is "
                             "flagged amount_overflow (an exact sum too wide for the lake and the engines, which "
                             "hold NULL for it; PostgreSQL's event_aggregations holds it exactly).")
    def check(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        start, end = _window(context, partitions)
        rows = lake.aggregations().read_range(granularity, start, end)
        flags = rows.column("amount_overflow")
        flagged = rows.filter(pc.fill_null(flags, False))
        unknown = pc.sum(pc.is_null(flags)).as_py() or 0
        return AssetCheckResult(passed=flagged.num_rows == 0, metadata={
            "rows": MetadataValue.int(rows.num_rows),
            "overflow_rows": MetadataValue.int(flagged.num_rows),
            "rows_computed_before_the_flag": MetadataValue.int(unknown),
            "examples": MetadataValue.json([{"period_start": r["period_start"].isoformat(),
                                             "event_type": r["event_type"]}
                                            for r in flagged.slice(0, EXAMPLES).to_pylist()]),
        })

    return check


aggregation_checks: list[AssetChecksDefinition] = [
    _amount_sums_fit(HOURLY, hourly_partitions), _amount_sums_fit(DAILY, closed_daily_partitions),
    _amount_sums_fit(WEEKLY, weekly_partitions)]

"""The aggregations' amount check: ``amount_sums_fit`` on each ``lake/lake_aggregations_<type>`` asset.

A period's amount is exact everywhere or flagged, never silently wrong: PostgreSQL's ``event_aggregations`` holds the
exact sum (``numeric``, unbounded); the lake's table and the engines hold DECIMAL(38, 9), and a sum that does not
fit is NULL there with ``amount_overflow`` true (``workdev_pipeline/aggregations/amounts.py``). The check fails when
a checked period holds such a row: its amount is missing in the lake and the engines.
"""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    MetadataValue,
    TimeWindowPartitionsDefinition,
    asset_check,
)

from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY, Granularity
from workdev_pipeline.assets.aggregations import lake_key
from workdev_pipeline.assets.check_records import checked_windows, record
from workdev_pipeline.assets.partitions import closed_daily_partitions, hourly_partitions, weekly_partitions
from workdev_pipeline.resources.lake import LakeResource

#: Rows named in a failed check's metadata at most.
EXAMPLES = 20


def _amount_sums_fit(granularity: Granularity, partitions: TimeWindowPartitionsDefinition) -> AssetChecksDefinition:
    check_key = AssetCheckKey(lake_key(granularity), "amount_sums_fit")

    @asset_check(asset=lake_key(granularity), partitions_def=partitions, name="amount_sums_fit",
                 description=f"Every {granularity.name} amount of the checked periods fits DECIMAL(38, 9): no row is "
                             "flagged amount_overflow (an exact sum too wide for the lake and the engines, which "
                             "hold NULL for it; PostgreSQL's event_aggregations holds it exactly). One verdict per "
                             "period.")
    def check(context: AssetCheckExecutionContext, lake: LakeResource) -> Iterator[Any]:
        windows = checked_windows(context, partitions)
        verdicts = {}
        if windows:
            rows = lake.aggregations().read_range(granularity, min(w.start for w in windows.values()),
                                                  max(w.end for w in windows.values()))
            by_period: dict[datetime, list[dict[str, Any]]] = {}
            for r in rows.select(["period_start", "event_type", "amount_overflow"]).to_pylist():
                by_period.setdefault(r["period_start"], []).append(r)
            for key, window in windows.items():
                period = by_period.get(window.start, [])
                flagged = [r for r in period if r["amount_overflow"]]
                verdicts[key] = AssetCheckResult(
                    passed=not flagged,
                    description=f"{len(flagged)} row(s) flagged amount_overflow: "
                                + ", ".join(r["event_type"] for r in flagged[:5]) if flagged else None,
                    metadata={"rows": MetadataValue.int(len(period)),
                              "overflow_rows": MetadataValue.int(len(flagged)),
                              "rows_computed_before_the_flag": MetadataValue.int(
                                  sum(1 for r in period if r["amount_overflow"] is None)),
                              "examples": MetadataValue.json([{"period_start": r["period_start"].isoformat(),
                                                               "event_type": r["event_type"]}
                                                              for r in flagged[:EXAMPLES]])})
        yield from record(context, check_key, verdicts)

    return check


aggregation_checks: list[AssetChecksDefinition] = [
    _amount_sums_fit(HOURLY, hourly_partitions), _amount_sums_fit(DAILY, closed_daily_partitions),
    _amount_sums_fit(WEEKLY, weekly_partitions)]

"""The hourly volume check: ``volumes_within_history`` on ``lake/lake_aggregations_hourly``, one evaluation per
closed hour, riding along with the hours' materializations (and runnable alone for chosen hours).

Each event type's count in the hour is compared with the same hour of the week in the previous weeks, read from
the lake's ``event_aggregations`` (the table the asset writes), by ``workdev_pipeline/aggregations/anomalies.py``:
a type gone silent fails the hour with severity ERROR, a spike or a drop with severity WARN; an hour with too short
a history passes, noted. Non-blocking: the daily aggregations build whatever the verdict. Metadata per type (counts
of event types, nothing personal): ``<type>/observed``, ``<type>/expected_low``, ``<type>/expected_high``.
"""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from workdev_pipeline.aggregations.anomalies import (
    HISTORY_WEEKS,
    MIN_HISTORY_WEEKS,
    HourVolumes,
    Verdict,
    assess_hour,
    history_hours,
)
from workdev_pipeline.aggregations.periods import HOURLY
from workdev_pipeline.assets.aggregations import lake_key
from workdev_pipeline.assets.check_records import checked_windows, record
from workdev_pipeline.assets.partitions import hourly_partitions
from workdev_pipeline.resources.lake import LakeResource

CHECK_NAME = "volumes_within_history"
CHECK_KEY = AssetCheckKey(lake_key(HOURLY), CHECK_NAME)


def evaluation_metadata(volumes: HourVolumes) -> dict[str, Any]:
    """The hour's summary and, per type, its count and expected range (ints and floats the UI can plot)."""
    metadata: dict[str, Any] = {
        "history_weeks": MetadataValue.int(volumes.history_weeks),
        "types": MetadataValue.int(len(volumes.types)),
        **{kind.value: MetadataValue.json(sorted(t.event_type for t in volumes.flagged(kind)))
           for kind in (Verdict.SILENT, Verdict.SPIKE, Verdict.DROP)},
    }
    for t in volumes.types:
        metadata[f"{t.event_type}/observed"] = MetadataValue.int(t.observed)
        if t.base is not None:
            metadata[f"{t.event_type}/expected_low"] = MetadataValue.float(round(t.base.low, 2))
            metadata[f"{t.event_type}/expected_high"] = MetadataValue.float(round(t.base.high, 2))
    return metadata


def outcome(volumes: HourVolumes) -> tuple[bool, AssetCheckSeverity, str]:
    """Passed, severity (a pass keeps Dagster's default, ERROR) and a one-line description of the hour's verdicts."""
    if not volumes.judged:
        return True, AssetCheckSeverity.ERROR, (
            f"not judged: {volumes.history_weeks} week(s) of history, {volumes.min_weeks} needed")
    silent, odd = volumes.flagged(Verdict.SILENT), volumes.flagged(Verdict.SPIKE, Verdict.DROP)
    described = "; ".join(f"{t.event_type} {t.verdict.value}: {t.observed} events, expected "
                          f"{t.base.low:.0f}-{t.base.high:.0f}" for t in (*silent, *odd) if t.base)
    if silent:
        return False, AssetCheckSeverity.ERROR, described
    if odd:
        return False, AssetCheckSeverity.WARN, described
    return True, AssetCheckSeverity.ERROR, (f"{len(volumes.types)} type(s) within their range of the last "
                                           f"{volumes.history_weeks} week(s)")


@asset_check(asset=lake_key(HOURLY), partitions_def=hourly_partitions, name=CHECK_NAME, blocking=False,
             description="Each event type's count in the hour against the same hour of the week in the previous "
                         f"{HISTORY_WEEKS} weeks (median ± max(k·σ, tolerance·median), σ from the MAD; thresholds "
                         "per type in the catalog): ERROR when a type went silent, WARN on a spike or a drop; passes "
                         f"unjudged with fewer than {MIN_HISTORY_WEEKS} weeks of history. See "
                         "docs/architecture.md#volume-checks.")
def volumes_within_history(context: AssetCheckExecutionContext, lake: LakeResource) -> Iterator[Any]:
    windows = checked_windows(context, hourly_partitions)
    hours = [w.start for w in windows.values()]
    counts = lake.aggregations().type_counts(HOURLY, [p for h in hours for p in (*history_hours(h), h)])
    verdicts = {}
    for key, hour in zip(windows, hours, strict=True):
        volumes = assess_hour(hour, counts)
        passed, severity, description = outcome(volumes)
        context.log.info(f"{key}: {'passed' if passed else severity.value} -- {description}")
        verdicts[key] = AssetCheckResult(passed=passed, severity=severity, description=description,
                                         metadata=evaluation_metadata(volumes))
    yield from record(context, CHECK_KEY, verdicts)  # one evaluation per hour, each against its hour

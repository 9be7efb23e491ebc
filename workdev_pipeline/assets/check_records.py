"""Recording a partitioned check's verdicts, one per partition: each as an ``AssetCheckEvaluation`` against its
partition (``partition=...``), about that partition's latest materialization. A run over a range of partitions
(a backfill's single run, ``check_lake_days`` given a range) or a sweep that wrote several days so leaves each
partition Passed or Failed in the UI -- never Skipped after a good run, never one verdict stored without a
partition for the whole range.

A check run launched without a partition ("Execute all" on the Checks tab) records its partitions' verdicts and
also the summary without a partition, which is what Dagster planned for it. Which partitions such a run covers is
the check's to say: every day the lake holds for the day checks, the periods of the last week for the aggregations'
(:func:`checked_windows`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetRecordsFilter,
    DagsterInstance,
    MetadataValue,
    Output,
    TimeWindow,
    TimeWindowPartitionsDefinition,
)

# the materialization an evaluation is about: AssetCheckEvaluation's documented argument, its class not exported
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

#: One verdict per partition key.
Verdicts = dict[str, AssetCheckResult]

#: What a run of a period check without a partition covers: the periods that started in the last week.
RECENT_PERIODS = timedelta(days=7)


def checked_partitions(context: AssetCheckExecutionContext) -> list[str] | None:
    """The run's partition keys (one, or a range); None when it has none."""
    if context.has_partition_key or context.has_partition_key_range:
        return list(context.partition_keys)
    return None


def checked_windows(context: AssetCheckExecutionContext,
                    partitions: TimeWindowPartitionsDefinition) -> dict[str, TimeWindow]:
    """The periods a check run covers, by partition key: the run's partition or range; the last week's periods when
    it has none."""
    keys = checked_partitions(context)
    if keys is None:
        now = datetime.now(UTC)
        keys = list(partitions.get_partition_keys_in_time_window(TimeWindow(now - RECENT_PERIODS, now)))
        context.log.info(f"no partition chosen: checking the {len(keys)} period(s) of the last "
                         f"{RECENT_PERIODS.days} days")
    return {key: partitions.time_window_for_partition_key(key) for key in keys}


def record(context: AssetCheckExecutionContext, check_key: AssetCheckKey,
           verdicts: Mapping[str, AssetCheckResult]) -> Iterator[Any]:
    """Each partition's verdict as an evaluation against it, then the check's output; a run without a partition also
    records the summary without one."""
    yield from evaluations(context.instance, check_key, verdicts)
    if checked_partitions(context) is None:
        yield summary(check_key, verdicts)
    yield Output(None)


def evaluations(instance: DagsterInstance, check_key: AssetCheckKey,
                verdicts: Mapping[str, AssetCheckResult]) -> Iterator[AssetCheckEvaluation]:
    """``verdicts`` as evaluations of ``check_key``, one per partition, in key order."""
    for key, verdict in sorted(verdicts.items()):
        yield AssetCheckEvaluation(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=verdict.passed,
            severity=verdict.severity, description=verdict.description, metadata=verdict.metadata,
            partition=key, target_materialization_data=latest_materialization(instance, check_key, key))


def summary(check_key: AssetCheckKey, verdicts: Mapping[str, AssetCheckResult]) -> AssetCheckEvaluation:
    """One evaluation for all the partitions (no partition): passed when every partition passed."""
    failed = sorted(k for k, v in verdicts.items() if not v.passed)
    errors = any(v.severity == AssetCheckSeverity.ERROR for v in verdicts.values() if not v.passed)
    shown = ", ".join(failed[:10]) + (" ..." if len(failed) > 10 else "")
    return AssetCheckEvaluation(
        asset_key=check_key.asset_key, check_name=check_key.name, passed=not failed,
        severity=AssetCheckSeverity.ERROR if errors or not failed else AssetCheckSeverity.WARN,
        description=f"{len(verdicts) - len(failed)} of {len(verdicts)} partition(s) passed"
                    + (f"; failed: {shown}" if failed else ""),
        metadata={"partitions": MetadataValue.int(len(verdicts)),
                  "failed_partitions": MetadataValue.json(failed[:100])})


def latest_materialization(instance: DagsterInstance, check_key: AssetCheckKey,
                           partition: str) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The partition's latest materialization, which its evaluation is about (the UI links them and shows the check
    as current)."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=check_key.asset_key, asset_partitions=[partition]), limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp)

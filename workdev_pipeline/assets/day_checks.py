"""The per-day checks of a day-partitioned table (the lake's, an engine's): each computes one verdict per day, and
each verdict is recorded against its day (``AssetCheckEvaluation(partition=...)``), whether the check ran alone
(``check_lake_days``), after a rebuild or a backfill of many days in one run (``BackfillPolicy.single_run``), or
inside a sweep for the days it appended to. So a day reads Passed or Failed for that day, never Skipped after a
good run, and a range's verdict is never stored without a partition.

A check run given no day (launched without a partition, e.g. "Execute all" on the Checks tab) checks every day
the lake holds, records each against its day, and also records the summary without a partition.

A damaged data file makes every lake check of its day fail (never raise), naming the file and the ``rebuild``
that repairs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
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
)

# the materialization an evaluation is about: AssetCheckEvaluation's documented argument, its class not exported
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from workdev_pipeline.assets.partitions import day_of
from workdev_pipeline.lake.integrity import DamagedFile, damaged_files
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.warehouse import Warehouse
from workdev_pipeline.sql_files import query

#: One verdict per day.
Verdicts = dict[date, AssetCheckResult]

#: The lake's per-day checks, by name (the checks of ``assets/checks.py`` and what a sweep evaluates).
RECONCILES, NO_DUPLICATES, SCHEMA, DECODES = (
    "reconciles_with_postgres", "no_duplicate_event_ids", "parquet_schema_matches", "day_files_decode")
LAKE_DAY_CHECKS = (RECONCILES, NO_DUPLICATES, SCHEMA, DECODES)


# -- which days, and how each verdict is recorded -------------------------------------------------------------


def checked_days(context: AssetCheckExecutionContext, lake: LakeResource) -> list[date]:
    """The days a check run covers: its partition or partition range (the launchpad's partition, or the
    ``dagster/asset_partition_range_start``/``_end`` tags of a backfill's single run); every day the lake holds
    when the run has none."""
    if context.has_partition_key or context.has_partition_key_range:
        return [day_of(key) for key in context.partition_keys]
    days = lake.snapshot().days()
    context.log.info(f"no partition chosen: checking the {len(days)} day(s) the lake holds")
    return days


def record(context: AssetCheckExecutionContext, check_key: AssetCheckKey, verdicts: Verdicts) -> Iterator[Any]:
    """Each day's verdict as an evaluation against its day (about the day's latest materialization), then the
    check's output; a run without a partition also records the summary without one (what it planned)."""
    yield from evaluations(context.instance, check_key, verdicts)
    if not (context.has_partition_key or context.has_partition_key_range):
        yield summary(check_key, verdicts)
    yield Output(None)


def evaluations(instance: DagsterInstance, check_key: AssetCheckKey,
                verdicts: Verdicts) -> Iterator[AssetCheckEvaluation]:
    """``verdicts`` as evaluations of ``check_key``, one per day, in day order."""
    for day, verdict in sorted(verdicts.items()):
        key = day.isoformat()
        yield AssetCheckEvaluation(
            asset_key=check_key.asset_key, check_name=check_key.name, passed=verdict.passed,
            severity=verdict.severity, description=verdict.description, metadata=verdict.metadata,
            partition=key, target_materialization_data=latest_materialization(instance, check_key, key))


def summary(check_key: AssetCheckKey, verdicts: Verdicts) -> AssetCheckEvaluation:
    """One evaluation for all the days (no partition): passed when every day passed."""
    failed = sorted(d.isoformat() for d, v in verdicts.items() if not v.passed)
    severity = AssetCheckSeverity.ERROR if any(
        v.severity == AssetCheckSeverity.ERROR for v in verdicts.values() if not v.passed) else AssetCheckSeverity.WARN
    return AssetCheckEvaluation(
        asset_key=check_key.asset_key, check_name=check_key.name, passed=not failed,
        severity=severity if failed else AssetCheckSeverity.ERROR,
        description=f"{len(verdicts) - len(failed)} of {len(verdicts)} day(s) passed"
                    + (f"; failed: {', '.join(failed[:10])}" + (" ..." if len(failed) > 10 else "") if failed else ""),
        metadata={"days": MetadataValue.int(len(verdicts)), "failed_days": MetadataValue.json(failed[:100])})


def latest_materialization(instance: DagsterInstance, check_key: AssetCheckKey,
                           partition: str) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The day's latest materialization, which its evaluation is about (the UI links them and shows the check as
    current)."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=check_key.asset_key, asset_partitions=[partition]), limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp)


# -- the verdicts ---------------------------------------------------------------------------------------------


def reconcile(days: Iterable[date], postgres: PostgresResource, warehouse: Warehouse) -> Verdicts:
    """Each day's counts by event_type in ``warehouse`` against PostgreSQL's processed events of its consumer."""
    verdicts: Verdicts = {}
    with postgres.connection() as conn:
        for day in days:
            start = datetime.combine(day, time.min, tzinfo=UTC)
            expected = dict(conn.execute(query("ingest/day_counts"), {
                "day_start": start, "day_end": start + timedelta(days=1), "consumer": warehouse.consumer}).fetchall())
            held = warehouse.day_counts(day)
            lines = ["| event_type | postgres | warehouse |", "|---|---|---|"]
            differences = {}
            for t in sorted(set(expected) | set(held)):
                lines.append(f"| {t} | {expected.get(t, 0):,} | {held.get(t, 0):,} |")
                if held.get(t, 0) != expected.get(t, 0):
                    differences[t] = held.get(t, 0) - expected.get(t, 0)
            verdicts[day] = AssetCheckResult(
                passed=not differences,
                description=None if not differences else
                f"{len(differences)} event type(s) differ from PostgreSQL (warehouse minus postgres): "
                + ", ".join(f"{t} {n:+,}" for t, n in sorted(differences.items())[:10]),
                metadata={
                    "postgres_events": MetadataValue.int(sum(expected.values())),
                    "warehouse_events": MetadataValue.int(sum(held.values())),
                    "differences": MetadataValue.json(differences),
                    "by_type": MetadataValue.md("\n".join(lines[:202])),
                    "source_query": MetadataValue.text(
                        "sql/queries/ingest/day_counts.sql (day_start, day_end, consumer)")})
    return verdicts


def no_duplicates(days: Iterable[date], warehouse: Warehouse) -> Verdicts:
    """No event_id held twice on each of ``days``."""
    verdicts: Verdicts = {}
    for day in days:
        duplicates = warehouse.duplicate_event_ids(day)
        verdicts[day] = AssetCheckResult(
            passed=not duplicates,
            description=f"{len(duplicates)} event_id(s) held more than once" if duplicates else None,
            metadata={"duplicates_shown": MetadataValue.int(len(duplicates)),
                      "examples": MetadataValue.json([{"event_id": i, "copies": n} for i, n in duplicates[:20]])})
    return verdicts


def schema_matches(days: Iterable[date], lake: LakeResource) -> Verdicts:
    """The table's schema is the declared one and each day's files have readable footers holding the rows the
    log records."""
    days = list(days)
    problems = lake.schema_problems(days[0]) if days else []
    damaged = _by_day(damaged_files(lake.snapshot(), days, deep=False))
    return {day: damaged_result(damaged[day], problems=MetadataValue.json(problems[:10])) if day in damaged else
            AssetCheckResult(passed=not problems, description="; ".join(problems[:3]) or None,
                             metadata={"problems": MetadataValue.json(problems[:10])})
            for day in days}


def files_decode(days: Iterable[date], lake: LakeResource, paths: Mapping[date, Iterable[str]] | None = None
                 ) -> Verdicts:
    """Every column of every data file of each day decodes (page checksums verified); only ``paths`` of a day
    when given (a sweep's own files: the day's others were decoded when they were written)."""
    days = list(days)
    snapshot = lake.snapshot()
    files = snapshot.files()
    per_day: dict[date, int] = {}
    for d in files.column("event_date").to_pylist():
        per_day[d] = per_day.get(d, 0) + 1
    only = None if paths is None else {p for day in days for p in paths.get(day, ())}
    damaged = _by_day(damaged_files(snapshot, days, deep=True, paths=only))
    verdicts: Verdicts = {}
    for day in days:
        checked = per_day.get(day, 0) if only is None else len(set(paths.get(day, ())))
        metadata = {"files_checked": MetadataValue.int(checked), "files_of_the_day": MetadataValue.int(
            per_day.get(day, 0))}
        verdicts[day] = damaged_result(damaged[day], **metadata) if day in damaged else AssetCheckResult(
            passed=True, metadata=metadata, description=None if only is None else
            f"the {checked} file(s) this sweep added decode (the day's others were checked when written; the "
            "daily deep check decodes them all)")
    return verdicts


def unless_damaged(days: Iterable[date], lake: LakeResource,
                   check: Callable[[list[date]], Verdicts]) -> Verdicts:
    """``check(days)``, one day at a time; a day whose check raises while a file of it is damaged fails naming
    the files instead (any other error is raised)."""
    verdicts: Verdicts = {}
    for day in days:
        try:
            verdicts.update(check([day]))
        except Exception:
            damaged = damaged_files(lake.snapshot(), [day], deep=True)
            if not damaged:
                raise
            verdicts[day] = damaged_result(damaged)
    return verdicts


def damaged_result(damaged: list[DamagedFile], **metadata: MetadataValue) -> AssetCheckResult:
    """A failed check naming the damaged files and the command that repairs each day."""
    fixes = sorted({d.fix for d in damaged})
    return AssetCheckResult(passed=False, severity=AssetCheckSeverity.ERROR, description=(
        f"{len(damaged)} damaged data file(s): {damaged[0].path} ({damaged[0].error}); repair: {fixes[0]}"),
        metadata={
            **metadata,
            "damaged_files": MetadataValue.json([d.as_metadata() for d in damaged[:50]]),
            "damaged_file_count": MetadataValue.int(len(damaged)),
            "fix": MetadataValue.md("Rewrite the damaged day(s) from PostgreSQL:\n\n" + "\n".join(
                f"    {command}" for command in fixes[:20]))})


def _by_day(damaged: list[DamagedFile]) -> dict[date, list[DamagedFile]]:
    found: dict[date, list[DamagedFile]] = {}
    for d in damaged:
        found.setdefault(d.day, []).append(d)
    return found


def lake_verdicts(days: Iterable[date], postgres: PostgresResource, lake: LakeResource,
                  paths: Mapping[date, Iterable[str]] | None = None) -> dict[str, Verdicts]:
    """Every per-day check of the lake on ``days``, by check name (``paths``: see :func:`files_decode`)."""
    days = sorted(set(days))
    return {RECONCILES: unless_damaged(days, lake, lambda d: reconcile(d, postgres, lake)),
            NO_DUPLICATES: unless_damaged(days, lake, lambda d: no_duplicates(d, lake)),
            SCHEMA: schema_matches(days, lake),
            DECODES: files_decode(days, lake, paths)}

"""The per-day checks of a day-partitioned table (the lake's, an engine's): each computes one verdict per day (keyed
by the day's partition key), recorded against its day by :mod:`workdev_pipeline.assets.check_records`, whether the
check ran alone (``check_lake_days``), after a rebuild or a backfill of many days in one run
(``BackfillPolicy.single_run``), or inside a sweep for the days it appended to.

A check run given no day (launched without a partition, e.g. "Execute all" on the Checks tab) checks every day
the lake holds.

A damaged data file makes every lake check of its day fail (never raise), naming the file and the ``rebuild``
that repairs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue

from workdev_pipeline.assets.check_records import Verdicts, checked_partitions
from workdev_pipeline.assets.partitions import day_of
from workdev_pipeline.lake.integrity import DamagedFile, damaged_files
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.warehouse import Warehouse
from workdev_pipeline.sql_files import query

#: The lake's per-day checks, by name (the checks of ``assets/checks.py`` and what a sweep evaluates).
RECONCILES, NO_DUPLICATES, SCHEMA, DECODES = (
    "reconciles_with_postgres", "no_duplicate_event_ids", "parquet_schema_matches", "day_files_decode")
LAKE_DAY_CHECKS = (RECONCILES, NO_DUPLICATES, SCHEMA, DECODES)


# -- which days -----------------------------------------------------------------------------------------------


def checked_days(context: AssetCheckExecutionContext, lake: LakeResource) -> list[date]:
    """The days a check run covers: its partition or partition range (the ``dagster/partition`` tag, or the
    ``dagster/asset_partition_range_start``/``_end`` tags of a backfill's single run); every day the lake holds
    when the run has none."""
    keys = checked_partitions(context)
    if keys is not None:
        return [day_of(key) for key in keys]
    days = lake.snapshot().days()
    context.log.info(f"no partition chosen: checking the {len(days)} day(s) the lake holds")
    return days


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
            verdicts[day.isoformat()] = AssetCheckResult(
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
        verdicts[day.isoformat()] = AssetCheckResult(
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
    shown = MetadataValue.json(problems[:10])
    return {day.isoformat(): damaged_result(damaged[day], problems=shown) if day in damaged else
            AssetCheckResult(passed=not problems, description="; ".join(problems[:3]) or None,
                             metadata={"problems": shown})
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
        verdicts[day.isoformat()] = damaged_result(damaged[day], **metadata) if day in damaged else AssetCheckResult(
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
            verdicts[day.isoformat()] = damaged_result(damaged)
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

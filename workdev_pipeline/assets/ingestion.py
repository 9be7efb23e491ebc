"""Ingestion: the incoming events in PostgreSQL (observed), the sweep that validates and enriches them into the
lake's day partitions (one Delta commit per sweep), and the replay of the dead letter. Each records the day
partitions it wrote and the lake's per-day checks of those days (:mod:`workdev_pipeline.assets.day_checks`)."""

import time
from collections.abc import Iterator
from datetime import date
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetExecutionContext,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from workdev_pipeline.assets.check_records import evaluations
from workdev_pipeline.assets.day_checks import LAKE_DAY_CHECKS, lake_verdicts
from workdev_pipeline.assets.keys import DEAD_LETTER_REPLAY, ENRICHED_EVENTS, INCOMING_EVENTS, LAKE_EVENTS
from workdev_pipeline.assets.metadata import day_metadata, outcome_metadata
from workdev_pipeline.assets.operator_runs import operator_metadata, reason_field
from workdev_pipeline.assets.partitions import partition_exists
from workdev_pipeline.assets.standards import defined_here
from workdev_pipeline.assets.table_metadata import LAKE_EVENTS_TABLE, lake_rows
from workdev_pipeline.governance.redaction import redact_message
from workdev_pipeline.ingest.backlog import Backlog
from workdev_pipeline.ingest.ingestor import LoadOutcome
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.run_queue import OPERATOR_PRIORITY, priority_tags

#: The op that takes the replay job's config.
REPLAY_OP = "replay_dead_letter"

incoming_events = AssetSpec(
    INCOMING_EVENTS,
    metadata=defined_here(),
    group_name="ingestion",
    kinds={"postgres"},
    description="Every platform event, as emitted by emit_platform_event() / AnalyticsClient into PostgreSQL "
                "(platform_event_store). Observed by the ingest sensor: pending backlog and its oldest age.",
)


def _day_partitions(outcome: LoadOutcome, mode: str, lake: LakeResource) -> Iterator[AssetMaterialization]:
    """A sweep or replay writes to several day partitions of the lake table: one materialization each, with what
    it wrote to the day (rows, bytes) and the day's and the table's rows at the version committed (from the Delta
    log)."""
    total, per_day = lake_rows(lake.events().snapshot(outcome.lake_version)) if outcome.days else (0, {})
    for day, rows in sorted(outcome.days.items()):
        if partition_exists(day):
            metadata = {**day_metadata(outcome, day), "mode": mode, "dagster/table_name": LAKE_EVENTS_TABLE,
                        "dagster/row_count": MetadataValue.int(total),
                        "dagster/partition_row_count": MetadataValue.int(per_day[day])}
            if outcome.sweep_id is not None:
                metadata["sweep_id"] = MetadataValue.int(outcome.sweep_id)
            if outcome.lake_version is not None:
                metadata["lake_version"] = MetadataValue.int(outcome.lake_version)
            yield AssetMaterialization(asset_key=LAKE_EVENTS, partition=day.isoformat(),
                                       description=f"{mode} of {rows:,} rows", metadata=metadata)


def _day_checks(context: AssetExecutionContext | OpExecutionContext, postgres: PostgresResource, lake: LakeResource,
                outcome: LoadOutcome, since: int | None = None) -> Iterator[AssetCheckEvaluation]:
    """The lake's per-day checks of the days ``outcome`` wrote, each recorded against its day (after the day's
    materialization, which it is about). ``since``: the lake's version before a sweep, whose deep check decodes the
    files committed after it only (the day's other files were checked when written). A check that cannot be
    evaluated is recorded failed with its error: the load itself is committed and its run stays a success."""
    days = sorted(d for d in outcome.days if partition_exists(d))
    if not days or outcome.lake_version is None:
        return
    started = time.monotonic()
    try:
        paths: dict[date, list[str]] | None = None
        if since is not None or outcome.kind == "sweep":
            paths = {}
            for path, day in lake.events().actions(-1 if since is None else since,
                                                   outcome.lake_version).added.items():
                paths.setdefault(day, []).append(path)
        verdicts = lake_verdicts(days, postgres, lake, paths)
    except Exception as exc:  # the events are in: say the checks could not run, on each day, and go on
        error = f"{type(exc).__name__}: {redact_message(str(exc))}"[:300]
        context.log.warning(f"the lake's day checks could not be evaluated: {error}")
        failed = AssetCheckResult(passed=False, description=f"not evaluated after the {outcome.kind}: {error}")
        verdicts = {name: {d.isoformat(): failed for d in days} for name in LAKE_DAY_CHECKS}
    for name, by_day in verdicts.items():
        yield from evaluations(context.instance, AssetCheckKey(LAKE_EVENTS, name), by_day)
    context.log.info(f"the lake's day checks of {len(days)} day(s) in {time.monotonic() - started:.2f} s")


@asset(
    key=ENRICHED_EVENTS,
    deps=[INCOMING_EVENTS],
    group_name="ingestion",
    kinds={"python", "deltalake"},
    description="Validated and enriched batches: each sweep takes the events committed since the last one "
                "(commit-order safe, by transaction id), checks each against its type's JSON schema, adds user "
                "role and tenure, device (ua-parser) and geo location (offline database), and appends them to "
                "the lake (lake/lake_events) in one Delta commit carrying the sweep id, exactly once. Invalid "
                "events go to the dead letter (event_failures) and never block the batch; a transient fault (the "
                "database restarting, the lake's storage read-only or full) is retried for WORKDEV_RETRY_SECONDS, "
                "then the run fails with its events still pending, for the next sweep.",
)
def enriched_events(context: AssetExecutionContext, postgres: PostgresResource, lake: LakeResource
                    ) -> Iterator[Any]:
    before = lake.events().version()
    outcome = lake.ingestor(postgres.url()).sweep(run_id=context.run.run_id)
    context.log.info(f"sweep {outcome.status}: {outcome.events_loaded} loaded, {outcome.events_failed} failed in "
                     f"{outcome.seconds:.2f} s")
    if outcome.status == "failed":  # transient: nothing dead-lettered, the sensor requests the next sweep (backoff)
        raise Failure(description=f"sweep failed transiently ({outcome.error_kind}) after {outcome.retries + 1} "
                                  f"attempt(s); its events stay pending and the next sweep resumes them",
                      metadata=outcome_metadata(outcome))
    yield from _day_partitions(outcome, "append", lake)
    yield from _day_checks(context, postgres, lake, outcome, since=before)
    yield MaterializeResult(metadata=outcome_metadata(outcome))


dead_letter_replay = AssetSpec(
    DEAD_LETTER_REPLAY,
    metadata=defined_here(),
    deps=[ENRICHED_EVENTS],
    group_name="ingestion",
    kinds={"python"},
    description="The dead letter (failed events) sent back through once the cause is fixed, recorded by the "
                "replay_failed_events job (never materialized from the graph: run the job, or `workdev-pipeline "
                "replay`): events that pass now are loaded (their days rebuilt, exactly once), the rest stay failed.",
)


class ReplayConfig(Config):
    dry_run: bool = Field(default=False, description="Only report how many dead-lettered events would be tried "
                                                     "again; change nothing.")
    reason: str = reason_field()


@op(name=REPLAY_OP, description="Send the dead letter back through (config: dry_run, reason) and record it on "
                               "pipeline/dead_letter_replay.")
def replay_dead_letter(context: OpExecutionContext, config: ReplayConfig, postgres: PostgresResource,
                       lake: LakeResource) -> None:
    reason = operator_metadata(config.dry_run, config.reason)
    if config.dry_run:
        with postgres.connection() as conn:
            failed = Backlog.read(conn, lake.consumer).failed
        context.log.info(f"dry run: {failed:,} dead-lettered event(s) would be tried again")
        context.log_event(AssetObservation(asset_key=DEAD_LETTER_REPLAY, metadata={
            "dead_letter": MetadataValue.int(failed), **reason}))
        return
    outcome = lake.ingestor(postgres.url()).replay(run_id=context.run.run_id)
    for event in (*_day_partitions(outcome, "replay", lake), *_day_checks(context, postgres, lake, outcome)):
        context.log_event(event)
    context.log_event(AssetMaterialization(asset_key=DEAD_LETTER_REPLAY,
                                           metadata={**outcome_metadata(outcome), **reason}))


# One step, in the run's worker process, like the sweeps (see ``schedules/sensors.py``).
@job(name="replay_failed_events", executor_def=in_process_executor, tags=priority_tags(OPERATOR_PRIORITY),
     description="Send the dead letter back through once the cause is fixed (config: dry_run, reason).")
def replay_job() -> None:
    replay_dead_letter()

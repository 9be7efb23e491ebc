"""Governance: the retention policy (a run daily at 02:00 UTC, see ``schedules/governance.py``) and GDPR erasure
requests (run by request id, launched by a sensor as they are filed), each an op job with typed config (dry run,
reason) that records its work on a non-materializable asset and then evaluates the check that proves it."""


from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetSpec,
    Config,
    Failure,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    asset_check,
    job,
    op,
)
from pydantic import Field, field_validator

from workdev_pipeline.assets.keys import ERASURE_REQUESTS, INCOMING_EVENTS, LAKE_EVENTS, RETENTION_RUNS
from workdev_pipeline.assets.operator_runs import operator_metadata, reason_field
from workdev_pipeline.assets.partitions import partition_exists
from workdev_pipeline.assets.standards import defined_here
from workdev_pipeline.governance.common import GovernanceInputError
from workdev_pipeline.governance.erasure import ErasureBatch, erase_requests, planned_requests, verify_erasures
from workdev_pipeline.governance.reaggregation import Reaggregation, reaggregate_erasures
from workdev_pipeline.governance.retention import RetentionReport, apply_retention, verify_retention
from workdev_pipeline.governance.run_storage import search_run_storage
from workdev_pipeline.resources.fanout import EnabledWarehouses
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.schedules.run_queue import OPERATOR_PRIORITY, priority_tags

#: The ops that take the jobs' config (``{"ops": {RETENTION_OP: {"config": ...}}}``).
RETENTION_OP = "apply_retention_policy"
ERASURE_OP = "erase_requests"


def check_evaluation(key: AssetKey, name: str, result: AssetCheckResult) -> AssetCheckEvaluation:
    """A check's result as the event an operator job logs after its work (the check also runs on its own)."""
    return AssetCheckEvaluation(asset_key=key, check_name=name, passed=result.passed, metadata=result.metadata,
                                severity=result.severity, description=result.description)


# -- retention ---------------------------------------------------------------------------------------------------

class RetentionConfig(Config):
    dry_run: bool = Field(default=False, description="Only report what would go (per category, per store); "
                                                     "change nothing.")
    as_of: str = Field(default="", description="The instant the policy is applied as of (ISO 8601; naive means "
                                               "UTC). Empty: now. Never in the future.")
    reason: str = reason_field()


def retention_metadata(report: RetentionReport) -> dict[str, Any]:
    categories = report.policy.categories()
    consumers = [w.consumer for w in report.warehouses]
    verb = "would go" if report.dry_run else "gone"
    lines = ["| category | retention (days) | cut-off (UTC) | postgres | " + " | ".join(
        c for c in consumers) + " |", "|---|---|---|---|" + "---|" * len(consumers)]
    for category, (days, cutoff) in categories.items():
        lines.append(f"| {category} | {days:,} | {cutoff:%Y-%m-%d %H:%M:%S} | {report.postgres.get(category, 0):,} | "
                     + " | ".join(f"{w.events.get(category, 0):,}" for w in report.warehouses) + " |")
    lines += ["", f"Events {verb} as of {report.as_of.isoformat()}."]
    if report.partitions_dropped:
        lines += ["", f"**Partitions {'to drop' if report.dry_run else 'dropped'}:** "
                  + ", ".join(report.partitions_dropped)]
    lines += [f"- {n}" for n in report.notes]
    meta: dict[str, Any] = {
        "dry_run": MetadataValue.bool(report.dry_run),
        "as_of": MetadataValue.text(report.as_of.isoformat()),
        "retention_run_id": MetadataValue.int(report.retention_run_id or 0),
        "postgres_events": MetadataValue.int(report.postgres_total),
        "postgres_events_by_category": MetadataValue.json(report.postgres),
        "partitions_dropped": MetadataValue.int(len(report.partitions_dropped)),
        "partitions_trimmed": MetadataValue.int(len(report.partitions_trimmed)),
        "dead_letter_rows": MetadataValue.int(report.dead_letter_rows),
        "bookkeeping_rows": MetadataValue.json(report.bookkeeping_rows),
        "ledger_hashes_expired": MetadataValue.int(report.ledger_hashes_expired),
        "seconds": MetadataValue.float(round(report.seconds.get("total", 0.0), 3)),
        "by_category": MetadataValue.md("\n".join(lines)),
    }
    for w in report.warehouses:
        meta[f"{w.consumer}_events"] = MetadataValue.int(sum(w.events.values()))
        meta[f"{w.consumer}_events_by_category"] = MetadataValue.json(w.events)
        meta[f"{w.consumer}_days_removed"] = MetadataValue.int(len(w.days_removed))
        meta[f"{w.consumer}_days_rewritten"] = MetadataValue.int(len(w.days_rewritten))
    return meta


retention_runs = AssetSpec(
    RETENTION_RUNS,
    metadata=defined_here(),
    deps=[INCOMING_EVENTS, LAKE_EVENTS],
    group_name="governance",
    kinds={"postgres", "deltalake"},
    description="The retention policy applied (the seed's daily 02:00 job), recorded by the apply_retention job "
                "(never materialized from the graph: run the job, or `workdev-pipeline retention`): every event "
                "older than its type's event_schemas.retention_days (transaction and content 7 years, user "
                "activity 2, interaction 1) leaves PostgreSQL -- whole monthly partitions detached and dropped when "
                "all of them expired, rows deleted otherwise, with their dead-letter and bookkeeping rows -- from "
                "the lake (one Delta DELETE, then a vacuum) and from every enabled engine (DELETE in the engine). "
                "One row of retention_runs per run. Config dry_run: only report what would go (an observation).",
)


@op(name=RETENTION_OP, out=Out(Nothing, is_required=False), tags={"kind": "postgres"},
    description="Apply the retention policy (config: dry_run, as_of, reason) and record it on "
                "postgres/retention_runs; a dry run only observes it (and its check does not run).")
def apply_retention_policy(context: OpExecutionContext, config: RetentionConfig, postgres: PostgresResource,
                           warehouses: EnabledWarehouses) -> Iterator[Output]:
    url = postgres.url()
    try:
        report = apply_retention(url, warehouses.governed(url), as_of=config.as_of or None,
                                 dry_run=config.dry_run, run_id=context.run.run_id)
    except GovernanceInputError as exc:
        raise Failure(description=str(exc)) from None
    totals = ", ".join(f"{c} {n:,}" for c, n in report.postgres.items()) or "nothing"
    context.log.info(f"retention as of {report.as_of.isoformat()}{' (dry run)' if report.dry_run else ''}: "
                     f"PostgreSQL {totals}; {len(report.partitions_dropped)} partition(s) "
                     f"{'to drop' if report.dry_run else 'dropped'}")
    metadata = {**retention_metadata(report), **operator_metadata(report.dry_run, config.reason)}
    if report.dry_run:
        context.log_event(AssetObservation(asset_key=RETENTION_RUNS, metadata=metadata))
        return
    # Observed, not materialized: a materialization would make the aggregations of those days stale, and their
    # automation would recompute them without the expired events. Aggregates hold no personal data and outlive
    # the raw events they summarise (erasure, which must reach them, does materialize its days).
    for w in report.warehouses[:1]:  # the lake (the engines' tables are observed by their own assets)
        removed = set(w.days_removed)
        for day in sorted(removed | set(w.days_rewritten)):
            if partition_exists(day):
                context.log_event(AssetObservation(
                    asset_key=LAKE_EVENTS, partition=day.isoformat(),
                    description="removed by retention" if day in removed else "expired events removed",
                    metadata={"mode": "retention", "removed": MetadataValue.bool(day in removed)}))
    context.log_event(AssetMaterialization(asset_key=RETENTION_RUNS, metadata=metadata))
    yield Output(None)


def retention_verdict(postgres: PostgresResource, warehouses: EnabledWarehouses) -> AssetCheckResult:
    """Nothing older than its policy remains, as of the last applied run."""
    url = postgres.url()
    found = verify_retention(url, warehouses.governed(url))
    if found.as_of is None:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                metadata={"reason": MetadataValue.text("retention has never been applied")})
    return AssetCheckResult(passed=found.passed, metadata={
        "as_of": MetadataValue.text(found.as_of.isoformat()),
        "retention_run_id": MetadataValue.int(found.retention_run_id or 0),
        "postgres_expired_events": MetadataValue.json(found.postgres),
        "dead_letter_expired_rows": MetadataValue.int(found.dead_letter_rows),
        "expired_partitions": MetadataValue.json(found.expired_partitions),
        "warehouse_expired_rows": MetadataValue.json(found.warehouses),
        "expired_since_the_run": MetadataValue.json(found.expired_since),
    })


@asset_check(asset=RETENTION_RUNS, description="Nothing older than its policy remains, as of the last applied "
             "run: no expired event in PostgreSQL's store or dead letter, no partition wholly before the longest "
             "retention, no expired row in the warehouse.")
def retention_enforced(postgres: PostgresResource, warehouses: EnabledWarehouses) -> AssetCheckResult:
    return retention_verdict(postgres, warehouses)


@op(ins={"applied": In(Nothing)}, description="Check that nothing expired remains (the check retention_enforced).")
def verify_retention_policy(context: OpExecutionContext, postgres: PostgresResource,
                            warehouses: EnabledWarehouses) -> None:
    context.log_event(check_evaluation(RETENTION_RUNS, "retention_enforced", retention_verdict(postgres, warehouses)))


# -- erasure -----------------------------------------------------------------------------------------------------

class ErasureConfig(Config):
    request_ids: list[int] = Field(default_factory=list, description="The erasure requests to run, by id (file "
                                   "them with `workdev-pipeline erase --file-only USER_ID`; the seed's GDPR "
                                   "statement files its own). Empty: every open request. Never a user id.")
    dry_run: bool = Field(default=False, description="Only report which open requests would run; change nothing.")
    reason: str = reason_field()

    @field_validator("request_ids")
    @classmethod
    def _request_ids(cls, value: list[int]) -> list[int]:
        bad = [v for v in value if v < 1]
        if bad:
            raise ValueError(f"request ids are positive numbers (gdpr_erasure_requests.request_id), got {bad[0]}: "
                             "file a request with `workdev-pipeline erase --file-only USER_ID` and give its id")
        return list(dict.fromkeys(value))


def erasure_metadata(batch: ErasureBatch, reaggregation: Reaggregation | None = None) -> dict[str, Any]:
    """The requests' figures -- request ids, never user ids or values (the ledger row has the details) -- and the
    aggregation periods recomputed."""
    rows = [{"request_id": r.request_id, "status": r.status, "postgres_events": r.store_rows,
             "session_events": r.session_rows, "referencing_events": r.reference_rows,
             "dead_letter_rows": r.dead_letter_rows, "profile_rows": r.profile_rows,
             "warehouse_rows": r.warehouse_rows, "days": len(r.affected_days), "hours": len(r.affected_hours),
             "aggregation_rows": r.aggregation_rows, "notes": r.notes} for r in batch.results]
    lines = ["| request | status | postgres events | dead letter | profile | warehouse rows | days / hours to "
             "re-aggregate |", "|---|---|---|---|---|---|---|"]
    lines += [f"| #{r.request_id} | {r.status} | {r.store_rows:,} | {r.dead_letter_rows:,} | {r.profile_rows} | "
              f"{sum(r.warehouse_rows.values()):,} | {len(r.affected_days)} / {len(r.affected_hours)} |"
              for r in batch.results]
    erased = sum(r.status == "erased" for r in batch.results)
    nothing = sum(r.status == "nothing_found" for r in batch.results)
    outcome = f"{erased} user(s) erased, {nothing} with nothing to erase"
    if batch.completed_earlier:
        outcome += f"; finished the queued work of earlier request(s) #{', #'.join(map(str, batch.completed_earlier))}"
    meta: dict[str, Any] = {
        "outcome": MetadataValue.text(outcome),
        "requests": MetadataValue.json(rows),
        "users_erased": MetadataValue.int(erased),
        "users_with_nothing_to_erase": MetadataValue.int(nothing),
        "postgres_events": MetadataValue.int(sum(r.store_rows for r in batch.results)),
        "warehouse_rows": MetadataValue.int(sum(sum(r.warehouse_rows.values()) for r in batch.results)),
        "seconds": MetadataValue.float(round(batch.seconds.get("total", 0.0), 3)),
        "summary": MetadataValue.md("\n".join(lines)),
    }
    if reaggregation is not None:
        labels = {t: [p.isoformat() for p in periods] for t, periods in reaggregation.periods.items() if periods}
        meta.update({
            "aggregation_periods_recomputed": MetadataValue.int(reaggregation.periods_recomputed),
            "aggregation_periods": MetadataValue.json({t: v[:200] for t, v in labels.items()}),
            "aggregation_periods_by_type": MetadataValue.json({t: len(v) for t, v in labels.items()}),
            "aggregation_periods_still_open": MetadataValue.json(
                {t: len(v) for t, v in reaggregation.open_periods.items()}),
            "aggregation_rows_written": MetadataValue.json(reaggregation.rows_written),
            "aggregation_rows_delivered": MetadataValue.json(reaggregation.rows_delivered),
            "aggregation_requests": MetadataValue.json(reaggregation.request_ids),
            "aggregation_seconds": MetadataValue.float(round(reaggregation.seconds, 3)),
        })
    return meta


erasure_requests = AssetSpec(
    ERASURE_REQUESTS,
    metadata=defined_here(),
    deps=[INCOMING_EVENTS, LAKE_EVENTS],
    group_name="governance",
    kinds={"postgres", "deltalake"},
    description="GDPR erasure requests, recorded by the gdpr_erasure job (never materialized from the graph: the "
                "gdpr_erasure_requests_sensor launches it for every open request; file them with `workdev-pipeline "
                "erase --file-only USER_ID` or the seed's statement; runs name request ids only): each "
                "user's personal data removed by the catalog's marks at any depth in PostgreSQL (own events, "
                "logged-out events of their sessions, other users' references replaced by a pseudonym), dead-letter "
                "messages scrubbed, the profile deleted, the lake's and engines' copies rewritten, then the closed "
                "hourly/daily/weekly aggregation periods holding "
                "their events recomputed in the same run (event_aggregations, the warehouse's aggregation files and "
                "every enabled engine's event_aggregations; metadata aggregation_periods); one ledger row per user "
                "with rows touched per store, keyed hashes "
                "of the values (never the values) and the days/hours re-aggregated. An unknown user is a no-op, "
                "reported; running it twice is harmless.",
)


@op(name=ERASURE_OP, out=Out(Nothing, is_required=False), tags={"kind": "postgres"},
    description="Run erasure requests by id (config: request_ids, dry_run, reason) and record them on "
                "postgres/gdpr_erasure_requests; a dry run only observes which would run (and its check does not "
                "run).")
def run_erasure_requests(context: OpExecutionContext, config: ErasureConfig, postgres: PostgresResource,
                         warehouses: EnabledWarehouses) -> Iterator[Output]:
    url = postgres.url()
    try:
        if config.dry_run:
            planned = planned_requests(url, config.request_ids or None)
            context.log.info(f"dry run: {len(planned)} open request(s) would run"
                             + (f": #{', #'.join(map(str, planned))}" if planned else ""))
            context.log_event(AssetObservation(asset_key=ERASURE_REQUESTS, metadata={
                "requests_planned": MetadataValue.json(planned), **operator_metadata(True, config.reason)}))
            return
        batch = erase_requests(url, config.request_ids or None, warehouses.governed(url), run_id=context.run.run_id)
    except GovernanceInputError as exc:
        raise Failure(description=str(exc)) from None
    for result in batch.results:
        context.log.info(result.summary)
    for refresh in batch.refreshes:
        for day, rows in sorted(refresh.days.items()):
            if partition_exists(day):
                context.log_event(AssetMaterialization(
                    asset_key=LAKE_EVENTS, partition=day.isoformat(), description="rows of erased users rewritten",
                    metadata={"mode": "erasure", "rows": MetadataValue.int(rows)}))
    reason = operator_metadata(False, config.reason)
    try:
        reaggregation = reaggregate_erasures(url, warehouses.lake.location(), engines=warehouses.remote())
    except Exception as exc:  # the erasure itself is done and recorded: its requests stay pending for the next run,
        # and the aggregations' automation recomputes the rewritten days' periods at its next :05 all the same
        context.log.error(f"recomputing the erased users' aggregation periods failed: {type(exc).__name__}: {exc}")
        metadata = {**erasure_metadata(batch), **reason}
        metadata["aggregation_error"] = MetadataValue.text(f"{type(exc).__name__}: {exc}"[:2000])
        context.log_event(AssetMaterialization(asset_key=ERASURE_REQUESTS, metadata=metadata))
        yield Output(None)
        return
    if reaggregation.request_ids:
        counts = ", ".join(f"{len(p)} {t}" for t, p in reaggregation.periods.items() if p) or "no closed"
        context.log.info(f"aggregations of request(s) #{', #'.join(map(str, reaggregation.request_ids))} "
                         f"recomputed: {counts} period(s) in {reaggregation.seconds:.2f} s")
    context.log_event(AssetMaterialization(asset_key=ERASURE_REQUESTS,
                                           metadata={**erasure_metadata(batch, reaggregation), **reason}))
    yield Output(None)


def erasure_verdict(instance: Any, postgres: PostgresResource, warehouses: EnabledWarehouses) -> AssetCheckResult:
    """No trace of any erased user anywhere, Dagster's run storage (of ``instance``) included."""
    url = postgres.url()
    found = verify_erasures(url, warehouses.governed(url),
                            run_storage=lambda search: search_run_storage(instance, search))
    places = found.places()
    return AssetCheckResult(
        passed=found.passed,
        severity=AssetCheckSeverity.ERROR,
        description=None if found.passed else "found: " + "; ".join(
            f"{request} in {', '.join(where)}" for request, where in sorted(places.items())[:10]),
        metadata={
            "requests_checked": MetadataValue.int(found.requests),
            "users_checked": MetadataValue.int(found.users),
            "traces": MetadataValue.int(len(found.traces)),
            "places": MetadataValue.json(dict(sorted(places.items())[:50])),
        })


@asset_check(asset=ERASURE_REQUESTS, description="No trace of any erased user anywhere: their id and every value "
             "the ledger hashed (emails, phones, addresses, names, sessions, devices) looked for in every string of "
             "PostgreSQL (store, profiles, dead letter), of every store (the lake's files and log, each engine) and "
             "of Dagster's run storage; no (IP address, user agent) pair of theirs on a row without a user; no "
             "erasure work left queued. Fails with the places found.")
def erasure_leaves_no_trace(context: AssetCheckExecutionContext, postgres: PostgresResource,
                            warehouses: EnabledWarehouses) -> AssetCheckResult:
    return erasure_verdict(context.instance, postgres, warehouses)


@op(ins={"erased": In(Nothing)}, description="Check that no erased user left a trace (the check "
    "erasure_leaves_no_trace).")
def verify_erasure_requests(context: OpExecutionContext, postgres: PostgresResource,
                            warehouses: EnabledWarehouses) -> None:
    context.log_event(check_evaluation(ERASURE_REQUESTS, "erasure_leaves_no_trace",
                                       erasure_verdict(context.instance, postgres, warehouses)))


# -- jobs --------------------------------------------------------------------------------------------------------
# Op jobs, not asset jobs: no "Materialize all" of the asset graph can select them; what they did is recorded on
# their (non-materializable) assets, and their checks are evaluated after the work.

@job(name="apply_retention", tags=priority_tags(OPERATOR_PRIORITY),
     description="Apply the retention policy (config: dry_run to report only, as_of, reason) and check nothing "
                 "expired remains.")
def retention_job() -> None:
    verify_retention_policy(apply_retention_policy())


@job(name="gdpr_erasure", tags=priority_tags(OPERATOR_PRIORITY),
     description="Run erasure requests (config: request_ids, empty for every open one; dry_run; reason) and check "
                 "no trace remains.")
def erasure_job() -> None:
    verify_erasure_requests(run_erasure_requests())

"""The remote warehouse engines (BigQuery, Redshift) as Dagster definitions, one independent set per engine so that
a failure in one never blocks or duplicates another:

* its delivery asset (``["pipeline", "bigquery_delivery"]``): loads what the lake committed since the engine's last
  delivered version (:mod:`workdev_pipeline.lake.delivery`), run by its sensor whenever the lake's version is past
  the one the engine delivered;
* its table asset (``bigquery/bigquery_events``: day partitions, downstream of the lake's): materializing
  days (a backfill) replaces them in the engine with the lake's current rows, one atomic load per day;
* its checks, which query the engine: reconciliation with PostgreSQL's processed events (those the lake's sweep
  took), no duplicate, parity with the lake (compared once the engine has delivered the lake's current version);
* its jobs and sensor, and its aggregation assets (:mod:`workdev_pipeline.assets.engine_aggregations`).

Retention and erasure reach the engines through the governance assets (``EnabledWarehouses``), in place.
Resources are looked up by the engine's name (``context.resources.bigquery``), so one factory serves every engine."""


from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSelection,
    BackfillPolicy,
    DefaultSensorStatus,
    JobDefinition,
    MaterializeResult,
    MetadataValue,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    asset,
    asset_check,
    define_asset_job,
    sensor,
)

from workdev_pipeline.assets.check_records import Verdicts, record
from workdev_pipeline.assets.day_checks import checked_days, no_duplicates, reconcile
from workdev_pipeline.assets.engine_aggregations import engine_aggregation_definitions
from workdev_pipeline.assets.keys import LAKE_EVENTS, engine_delivery_key, engine_events_key
from workdev_pipeline.assets.metadata import rate_metadata
from workdev_pipeline.assets.partitions import daily_checks_config, daily_partitions, day_of, partition_exists
from workdev_pipeline.governance.redaction import redact_message
from workdev_pipeline.lake.delivery import Delivery, delivered_version
from workdev_pipeline.resources.lake import LakeResource
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.remote import RemoteWarehouseMixin
from workdev_pipeline.schedules.sensors import sweep_requests

#: The engines this module knows: name (= resource key) -> (kinds shown in the UI, a sentence for descriptions).
REMOTE_ENGINES = {
    "bigquery": ({"bigquery"}, "BigQuery (a table partitioned by DATE(timestamp), clustered by event_type, user_id; "
                               "load jobs of the lake's Parquet with deterministic ids, MERGE on event_id)"),
    "redshift": ({"redshift"}, "Redshift (SUPER JSON columns; staging table + delete/insert merge in one "
                               "transaction; COPY from S3 when a bucket is configured)"),
}


@dataclass
class EngineDefinitions:
    """Everything one remote engine adds to the code location."""

    engine: str
    assets: list[AssetsDefinition] = field(default_factory=list)
    asset_checks: list[AssetChecksDefinition] = field(default_factory=list)
    jobs: list[JobDefinition] = field(default_factory=list)
    sensors: list[SensorDefinition] = field(default_factory=list)


def table_key(engine: str) -> AssetKey:
    return engine_events_key(engine)


def delivery_key(engine: str) -> AssetKey:
    return engine_delivery_key(engine)


def delivery_job_name(engine: str) -> str:
    return f"deliver_to_{engine}"


def delivery_sensor_name(engine: str) -> str:
    return f"delivery_sensor_{engine}"


@dataclass
class EngineView:
    """An engine as the shared checks (``assets/checks.py``) read it: its own rows, compared with PostgreSQL's
    processed events of the lake's consumer (the engine holds what the lake holds)."""

    resource: RemoteWarehouseMixin
    consumer: str = "lake"

    def day_counts(self, day: date) -> dict[str, int]:
        return self.resource.day_counts(day)

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        return self.resource.duplicate_event_ids(day, limit)

    def event_ids(self, day: date) -> set[str]:
        return self.resource.event_ids(day)


def delivery_figures(outcome: Delivery) -> dict[str, Any]:
    """The delivery's totals as plain values: the unpartitioned delivery's figures, and the ``run`` entry of each
    day a replace of days materialized (whose own figures are :func:`delivery_day_metadata`)."""
    return {"rows_loaded": outcome.rows, "days_replaced": len(outcome.days_replaced),
            "days_merged": len(outcome.days_merged), "files": outcome.files, "bytes": outcome.bytes,
            "seconds": round(outcome.seconds, 3), "load_seconds": round(outcome.load_seconds, 3),
            "events_per_second": round(outcome.events_per_second, 1), "retries": outcome.retries}


def delivery_metadata(outcome: Delivery) -> dict[str, Any]:
    """The metadata of the engine's (unpartitioned) delivery asset: the delivery's figures, versions, preview."""
    meta: dict[str, Any] = {"engine": outcome.engine, "status": outcome.status, "mode": outcome.mode}
    for name, figure in delivery_figures(outcome).items():
        meta[name] = MetadataValue.float(figure) if isinstance(figure, float) else MetadataValue.int(figure)
    return {**meta, **_versions(outcome), "preview": _delivery_preview(outcome)}


def partitioned_delivery_metadata(outcome: Delivery) -> dict[str, Any]:
    """What each day of a replace of days carries besides its own figures (:func:`delivery_day_metadata`): engine,
    status, mode, lake version, and the run's totals in one ``run`` entry with its preview (``run_preview``)."""
    return {"engine": outcome.engine, "status": outcome.status, "mode": outcome.mode,
            "run": MetadataValue.json(delivery_figures(outcome)), **_versions(outcome),
            "run_preview": _delivery_preview(outcome)}


def delivery_day_metadata(outcome: Delivery, day: date) -> dict[str, Any]:
    """The day's own figures in ``outcome``: rows loaded, the lake's files and bytes they came from, and -- for a
    day loaded on its own -- its seconds and events per second."""
    rows = outcome.days.get(day, 0)
    meta: dict[str, Any] = {"rows_loaded": MetadataValue.int(rows),
                            "files": MetadataValue.int(outcome.day_files.get(day, 0)),
                            "bytes": MetadataValue.int(outcome.day_bytes.get(day, 0))}
    if day in outcome.day_seconds:
        meta.update(rate_metadata(rows, outcome.day_seconds[day]))
    return meta


def _versions(outcome: Delivery) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if outcome.from_version is not None:
        meta["lake_version_from"] = MetadataValue.int(outcome.from_version)
    if outcome.to_version is not None:
        meta["lake_version"] = MetadataValue.int(outcome.to_version)
    return meta


def _delivery_preview(outcome: Delivery) -> MetadataValue:
    replaced = set(outcome.days_replaced)
    lines = ["| day | load | rows |", "|---|---|---|"] + [
        f"| {d} | {'replace' if d in replaced else 'merge'} | {n:,} |" for d, n in sorted(outcome.days.items())]
    lines += [f"- {redact_message(n)}" for n in outcome.notes]
    return MetadataValue.md("\n".join(lines[:400]))


def engine_definitions(engine: str) -> EngineDefinitions:
    """The assets, checks, jobs and sensor of one remote engine (``bigquery`` or ``redshift``)."""
    kinds, about = REMOTE_ENGINES[engine]
    table, delivery = table_key(engine), delivery_key(engine)
    tags = {"engine": engine}

    @asset(key=delivery, deps=[LAKE_EVENTS], group_name="ingestion", kinds={"python", *kinds}, tags=tags,
           required_resource_keys={"postgres", "lake", engine},
           description=f"Delivery to {about}: loads what the lake committed since the version this engine last "
                       "delivered (kept in PostgreSQL, lake_deliveries): added files merged into their day, days "
                       "the lake rewrote (a rebuild, retention, an erasure) replaced whole, exactly once.")
    def delivery_asset(context: AssetExecutionContext) -> MaterializeResult:
        resource = getattr(context.resources, engine)
        outcome = resource.deliver(context.resources.postgres.url(), context.resources.lake.events(),
                                   run_id=context.run.run_id)
        context.log.info(f"{engine} delivery {outcome.status} ({outcome.mode}): lake {outcome.from_version} -> "
                         f"{outcome.to_version}, {outcome.rows:,} rows over {len(outcome.days)} day(s) in "
                         f"{outcome.seconds:.2f} s")
        _report_days(context, table, outcome, engine)
        return MaterializeResult(metadata=delivery_metadata(outcome))

    @asset(key=table, deps=[LAKE_EVENTS, delivery], partitions_def=daily_partitions,
           backfill_policy=BackfillPolicy.single_run(), group_name="warehouse", kinds=kinds, tags=tags,
           required_resource_keys={"postgres", "lake", engine},
           description=f"platform_events in {about}, one partition per UTC day of the event timestamp, fed from the "
                       "lake. Deliveries merge new files into their day; materializing days replaces each of them "
                       "whole with the lake's current rows (one atomic load per day), touching no other day.")
    def table_asset(context: AssetExecutionContext) -> MaterializeResult:
        days = [day_of(key) for key in context.partition_keys]
        resource = getattr(context.resources, engine)
        outcome = resource.replace_days(context.resources.postgres.url(), context.resources.lake.events(), days,
                                        run_id=context.run.run_id)
        context.log.info(f"{engine}: {len(days)} day(s) replaced from lake version {outcome.to_version}: "
                         f"{outcome.rows:,} rows in {outcome.seconds:.2f} s")
        for key, day in zip(context.partition_keys, days, strict=True):  # each day its own figures
            context.add_asset_metadata(delivery_day_metadata(outcome, day), partition_key=key)
        return MaterializeResult(metadata=partitioned_delivery_metadata(outcome))

    @asset_check(asset=table, partitions_def=daily_partitions, name="reconciles_with_postgres",
                 required_resource_keys={"postgres", "lake", engine},
                 description=f"{engine}'s count by event_type (queried in {engine}) reconciles with PostgreSQL's "
                             "processed events (swept into the lake, not in the dead letter), day by day.")
    def reconciles(context: AssetCheckExecutionContext) -> Iterator[Any]:
        view = EngineView(getattr(context.resources, engine), context.resources.lake.consumer)
        days = checked_days(context, context.resources.lake)
        yield from record(context, AssetCheckKey(table, "reconciles_with_postgres"),
                          reconcile(days, context.resources.postgres, view))

    @asset_check(asset=table, partitions_def=daily_partitions, name="no_duplicate_event_ids",
                 required_resource_keys={"lake", engine},
                 description=f"No event_id is held twice in {engine}'s day.")
    def unique(context: AssetCheckExecutionContext) -> Iterator[Any]:
        days = checked_days(context, context.resources.lake)
        yield from record(context, AssetCheckKey(table, "no_duplicate_event_ids"),
                          no_duplicates(days, EngineView(getattr(context.resources, engine))))

    @asset_check(asset=table, partitions_def=daily_partitions, name="parity_with_lake", additional_deps=[LAKE_EVENTS],
                 required_resource_keys={"postgres", "lake", engine},
                 description=f"{engine} holds the same event_ids as the lake for the day, and the same exact amount "
                             f"sums and amount_overflow counts per event type, compared once {engine} "
                             "has delivered the lake's current version.")
    def parity(context: AssetCheckExecutionContext) -> Iterator[Any]:
        days = checked_days(context, context.resources.lake)
        yield from record(context, AssetCheckKey(table, "parity_with_lake"), lake_parity(
            days, context.resources.postgres, context.resources.lake, getattr(context.resources, engine), engine))

    deliver = define_asset_job(delivery_job_name(engine), selection=[delivery], tags={"workdev/engine": engine},
                               description=f"One delivery from the lake into {engine}.")
    checks_job = define_asset_job(f"check_{engine}_days", selection=AssetSelection.checks_for_assets(table),
                                  config=daily_checks_config(),
                                  description=f"Run {engine}'s per-day checks for chosen days (a day from the "
                                              "launchpad's partition picker, a range by a backfill from the job's "
                                              "Partitions page, or, given none, every day the lake holds), each "
                                              "recorded against its day.")

    @sensor(name=delivery_sensor_name(engine), job=deliver, minimum_interval_seconds=30,
            default_status=DefaultSensorStatus.RUNNING, required_resource_keys={"postgres", "lake", engine},
            description=f"Requests a delivery into {engine} while the lake's version is past the one {engine} "
                        "delivered.")
    def delivery_sensor(context: SensorEvaluationContext) -> SensorResult:
        behind = versions_behind(context.resources.postgres, context.resources.lake, engine)
        run_requests, cursor = sweep_requests(context, behind, deliver.name, delivery_sensor_name(engine), engine)
        return SensorResult(run_requests=run_requests, cursor=cursor)

    aggregation_assets, aggregation_checks = engine_aggregation_definitions(engine, kinds)
    return EngineDefinitions(engine, assets=[delivery_asset, table_asset, *aggregation_assets],
                             asset_checks=[reconciles, unique, parity, *aggregation_checks],
                             jobs=[deliver, checks_job], sensors=[delivery_sensor])


def _report_days(context: AssetExecutionContext, table: AssetKey, outcome: Delivery, engine: str) -> None:
    """A delivery loads several day partitions of the engine's table: record each of them."""
    replaced = set(outcome.days_replaced)
    for day in sorted(outcome.days):
        if partition_exists(day):
            metadata = {**delivery_day_metadata(outcome, day), "mode": "replace" if day in replaced else "merge",
                        "engine": engine}
            if outcome.to_version is not None:
                metadata["lake_version"] = MetadataValue.int(outcome.to_version)
            context.log_event(AssetMaterialization(asset_key=table, partition=day.isoformat(),
                                                   tags={"workdev/engine": engine}, metadata=metadata,
                                                   description=f"delivered from lake version {outcome.to_version}"))


def versions_behind(postgres: PostgresResource, lake: LakeResource, engine: str) -> int:
    """Lake versions the engine has not delivered (0: up to date, or no lake yet)."""
    version = lake.events().version()
    if version is None:
        return 0
    with postgres.connection() as conn:
        delivered, _ = delivered_version(conn, engine)
    if delivered is None:
        return version + 1
    return abs(version - delivered)  # behind the engine's version: the lake was re-created (a full delivery)


def lake_parity(days: list[date], postgres: PostgresResource, lake: LakeResource, resource: RemoteWarehouseMixin,
                engine: str) -> Verdicts:
    """Event ids and typed amounts (per event type: the exact sum, the events flagged ``amount_overflow``) of each
    day in the engine against the lake's current version. Compared only when the engine has
    delivered exactly that version (otherwise it may simply be a delivery behind): passed, and said so, otherwise.
    The lake is read at the version checked, so a commit meanwhile cannot make the two disagree."""
    snapshot = lake.snapshot()
    with postgres.connection() as conn:
        delivered, _ = delivered_version(conn, engine)
    versions = {"lake_version": MetadataValue.int(-1 if snapshot.version is None else snapshot.version),
                "delivered_version": MetadataValue.int(-1 if delivered is None else delivered)}
    if snapshot.version is None or delivered != snapshot.version:
        return dict.fromkeys((d.isoformat() for d in days), AssetCheckResult(
            passed=True, description=f"not compared: {engine} has delivered lake version {delivered}, the lake is "
                                     f"at {snapshot.version}", metadata={**versions, "compared": False}))
    verdicts = {}
    for day in days:
        here = {r[0] for r in snapshot.query("SELECT event_id FROM platform_events", days=[day])}
        there = resource.event_ids(day)
        only_lake, only_engine = here - there, there - here
        examples = [{"event_id": e, "missing_in": where}
                    for ids, where in ((only_lake, engine), (only_engine, "lake")) for e in sorted(ids)[:10]]
        sums, held = lake.amounts(day, snapshot), resource.amounts(day)
        nothing = (Decimal(0), 0)
        amounts = [{"event_type": t, "lake": str(sums.get(t, nothing)[0]), engine: str(held.get(t, nothing)[0]),
                    "lake_overflow": sums.get(t, nothing)[1], f"{engine}_overflow": held.get(t, nothing)[1]}
                   for t in sorted(set(sums) | set(held)) if sums.get(t, nothing) != held.get(t, nothing)]
        problems = [*([f"{len(only_lake)} event(s) only in the lake, {len(only_engine)} only in {engine}"]
                      if here != there else []),
                    *([f"amounts of {len(amounts)} event type(s) differ"] if amounts else [])]
        verdicts[day.isoformat()] = AssetCheckResult(
            passed=not problems, description="; ".join(problems) or None,
            metadata={**versions, "compared": True, "only_lake": MetadataValue.int(len(only_lake)),
                      f"only_{engine}": MetadataValue.int(len(only_engine)), "examples": MetadataValue.json(examples),
                      "amounts_differ": MetadataValue.json(amounts[:20])})
    return verdicts

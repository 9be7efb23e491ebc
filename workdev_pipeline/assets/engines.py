"""The remote warehouse engines (BigQuery, Redshift) as Dagster definitions, one independent set per engine so that
a failure in one never blocks or duplicates another: its table asset (``["bigquery", "platform_events"]``: day
partitions, backfills rebuild them), its sweep and replay assets, its checks (reconciliation with PostgreSQL, no
duplicate, parity with the local warehouse), its jobs and its ingest sensor, and its aggregation assets
(``["bigquery", "event_aggregations_hourly"]``..., :mod:`workdev_pipeline.assets.engine_aggregations`). Each
engine is its own consumer: its own watermark, dead letter and ``warehouse_sync_status`` rows.

Resources are looked up by the engine's name (``context.resources.bigquery``), so one factory serves every
engine."""


from dataclasses import dataclass, field
from datetime import date

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetExecutionContext,
    AssetKey,
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

from workdev_pipeline.assets.checks import no_duplicates, reconcile
from workdev_pipeline.assets.engine_aggregations import engine_aggregation_definitions
from workdev_pipeline.assets.ingestion import INCOMING_EVENTS, WAREHOUSE_EVENTS, replay_into, sweep_into
from workdev_pipeline.assets.partitions import daily_partitions, day_of
from workdev_pipeline.assets.warehouse import rebuild_days
from workdev_pipeline.resources.postgres import PostgresResource
from workdev_pipeline.resources.warehouse import Warehouse
from workdev_pipeline.schedules.sensors import sweep_requests
from workdev_pipeline.sql_files import query

#: The engines this module knows: name (= resource key) -> (kinds shown in the UI, a sentence for descriptions).
REMOTE_ENGINES = {
    "bigquery": ({"bigquery", "parquet"}, "BigQuery (a table partitioned by DATE(timestamp), clustered by event_type, "
                                          "user_id; Parquet load jobs with deterministic ids, MERGE on event_id)"),
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
    return AssetKey([engine, "platform_events"])


def sweep_key(engine: str) -> AssetKey:
    return AssetKey(["pipeline", f"{engine}_delivery"])


def _days(context: AssetCheckExecutionContext) -> list[date]:
    return [day_of(key) for key in context.partition_keys]


def engine_definitions(engine: str) -> EngineDefinitions:
    """The assets, checks, jobs and sensor of one remote engine (``bigquery`` or ``redshift``)."""
    kinds, about = REMOTE_ENGINES[engine]
    table, sweep = table_key(engine), sweep_key(engine)
    tags = {"engine": engine}

    @asset(key=sweep, deps=[INCOMING_EVENTS], group_name="ingestion", kinds={"python", *kinds} - {"parquet"},
           tags=tags, required_resource_keys={"postgres", engine},
           description=f"Delivery to {about}: each sweep takes the events committed since this engine's last one "
                       "(its own watermark), validates and enriches them as for the local warehouse, writes the "
                       "day files to the engine's mirror and loads them, exactly once; invalid events go to this "
                       "engine's dead letter.")
    def delivery(context: AssetExecutionContext) -> MaterializeResult:
        return sweep_into(context, context.resources.postgres, getattr(context.resources, engine), table, engine)

    @asset(key=["pipeline", f"{engine}_dead_letter_replay"], deps=[sweep], group_name="ingestion",
           kinds={"python"}, tags=tags, required_resource_keys={"postgres", engine},
           description=f"Materialize to send {engine}'s dead letter back through once the cause is fixed (the "
                       "engine down past its retries, a schema fixed): what passes now is loaded, its days "
                       "rebuilt.")
    def replay(context: AssetExecutionContext) -> MaterializeResult:
        return replay_into(context, context.resources.postgres, getattr(context.resources, engine), table, engine)

    @asset(key=table, deps=[sweep], partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run(),
           group_name="warehouse", kinds=kinds, tags=tags, required_resource_keys={"postgres", engine},
           description=f"platform_events in {about}, one partition per UTC day of the event timestamp. Sweeps "
                       "merge new events into their day; materializing days rebuilds them whole from PostgreSQL "
                       "(the day replaced atomically), touching no other day.")
    def table_asset(context: AssetExecutionContext) -> MaterializeResult:
        return rebuild_days(context, context.resources.postgres, getattr(context.resources, engine), engine)

    @asset_check(asset=table, partitions_def=daily_partitions, name="reconciles_with_postgres",
                 required_resource_keys={"postgres", engine},
                 description=f"{engine}'s count by event_type reconciles with PostgreSQL's processed events of its "
                             "consumer, day by day.")
    def reconciles(context: AssetCheckExecutionContext) -> AssetCheckResult:
        return reconcile(_days(context), context.resources.postgres, getattr(context.resources, engine))

    @asset_check(asset=table, partitions_def=daily_partitions, name="no_duplicate_event_ids",
                 required_resource_keys={engine}, description=f"No event_id is held twice in {engine}'s day.")
    def unique(context: AssetCheckExecutionContext) -> AssetCheckResult:
        return no_duplicates(_days(context), getattr(context.resources, engine))

    @asset_check(asset=table, partitions_def=daily_partitions, name="parity_with_local",
                 additional_deps=[WAREHOUSE_EVENTS], required_resource_keys={"warehouse", "postgres", engine},
                 description=f"{engine} holds the same event_ids as the local warehouse for the day, when both "
                             "have delivered everything committed before it (cross-engine parity).")
    def parity(context: AssetCheckExecutionContext) -> AssetCheckResult:
        return engine_parity(_days(context), context.resources.postgres, context.resources.warehouse,
                             getattr(context.resources, engine), engine)

    ingest = define_asset_job(f"ingest_events_{engine}", selection=[sweep], tags={"workdev/engine": engine},
                              description=f"One sweep into {engine}.")
    replay_job = define_asset_job(f"replay_failed_events_{engine}", selection=[replay.key],
                                  tags={"workdev/engine": engine},
                                  description=f"Send {engine}'s dead letter back through.")
    checks_job = define_asset_job(f"check_{engine}_days", selection=AssetSelection.checks_for_assets(table),
                                  description=f"Run {engine}'s partition checks for chosen days.")

    @sensor(name=f"ingest_sensor_{engine}", job=ingest, minimum_interval_seconds=30,
            default_status=DefaultSensorStatus.RUNNING, required_resource_keys={"postgres", engine},
            description=f"Requests a sweep into {engine} while events it has not received are pending.")
    def ingest_sensor(context: SensorEvaluationContext) -> SensorResult:
        resource = getattr(context.resources, engine)
        with context.resources.postgres.connection() as conn:
            pending, _, _ = conn.execute(query("ingest/pending_backlog"), {"consumer": resource.consumer}).fetchone()
        run_requests, cursor = sweep_requests(context, pending, ingest.name, f"ingest_sensor_{engine}", engine)
        return SensorResult(run_requests=run_requests, cursor=cursor)

    aggregation_assets, aggregation_checks = engine_aggregation_definitions(engine, kinds)
    return EngineDefinitions(engine, assets=[delivery, replay, table_asset, *aggregation_assets],
                             asset_checks=[reconciles, unique, parity, *aggregation_checks],
                             jobs=[ingest, replay_job, checks_job], sensors=[ingest_sensor])


def engine_parity(days: list[date], postgres: PostgresResource, local: Warehouse, remote: Warehouse,
                  engine: str) -> AssetCheckResult:
    """Event ids of each day in the remote engine against the local warehouse. A day is compared only when both
    consumers' watermarks have passed the same point (otherwise one may simply be a sweep behind): it is
    skipped (and said so) while their pending backlogs differ."""
    with postgres.connection() as conn:
        pending = {c: conn.execute(query("ingest/pending_backlog"), {"consumer": c}).fetchone()[0]
                   for c in (local.consumer, remote.consumer)}
    if pending[local.consumer] or pending[remote.consumer]:
        return AssetCheckResult(passed=True, description="not compared: a sweep is pending in one of the engines",
                                metadata={"pending": MetadataValue.json(pending), "compared_days": 0})
    differences: dict[str, dict[str, int]] = {}
    examples: list[dict[str, str]] = []
    for day in days:
        here, there = local.event_ids(day), remote.event_ids(day)
        if here != there:
            only_local, only_remote = here - there, there - here
            differences[day.isoformat()] = {"only_local": len(only_local), f"only_{engine}": len(only_remote)}
            examples += [{"day": day.isoformat(), "event_id": e, "missing_in": where}
                         for ids, where in ((only_local, engine), (only_remote, "local")) for e in sorted(ids)[:5]]
    return AssetCheckResult(passed=not differences, metadata={
        "compared_days": MetadataValue.int(len(days)), "differences": MetadataValue.json(differences),
        "examples": MetadataValue.json(examples[:20])})

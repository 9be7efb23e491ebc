"""The lake as a Dagster resource: where it lives (``WORKDEV_LAKE_URI``, storage options), the consumer it sweeps
PostgreSQL as, and the ingestion engine and readers built on it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
from dagster import ConfigurableResource
from pydantic import Field

from workdev_pipeline.aggregations.amounts import amount_totals, fill_amounts
from workdev_pipeline.catalog import amount_fields
from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.lake.aggregations import AggregationLake
from workdev_pipeline.lake.events import LAKE_SCHEMA, EventLake, LakeSnapshot
from workdev_pipeline.lake.location import LakeLocation


class LakeResource(ConfigurableResource):
    """``lake/platform_events`` (Delta, day partitions) and the aggregation tables beside it."""

    uri: str = Field(default="", description="the lake's root (a path, s3://, gs://, az://); empty for "
                                             "WORKDEV_LAKE_URI, else $WORKDEV_HOME/lake")
    geoip_database: str = Field(default="", description="a MaxMind .mmdb file; empty for geoip2fast's data")
    consumer: str = Field(default="lake", description="the name the lake's sweep progress is kept under")
    engines: list[str] = Field(default=[], description="the warehouse engines fed from this lake (bigquery, "
                               "redshift): each sweep registers them in PostgreSQL (lake_engines), and an event "
                               "counts as processed once every one of them has delivered it; set by "
                               "build_definitions from the engine resources it is given")
    retry_seconds: float = Field(default=-1.0, description="how long a transient failure (database restarting, "
                                 "lake storage read-only or full, network) is retried before the sweep fails, its "
                                 "events left pending for the next one; negative: WORKDEV_RETRY_SECONDS, default 60")
    backoff_seconds: float = Field(default=0.5, description="base of the exponential backoff (with jitter)")

    def location(self) -> LakeLocation:
        return LakeLocation.from_env(self.uri or None)

    def events(self) -> EventLake:
        return EventLake(self.location())

    def aggregations(self) -> AggregationLake:
        return AggregationLake(self.location())

    def snapshot(self) -> LakeSnapshot:
        return self.events().snapshot()

    def feeding(self, engines: list[str]) -> LakeResource:
        """This lake, feeding ``engines`` (the same settings otherwise)."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, "engines": sorted(engines)})  # built anew: Dagster configures from __init__

    def ingestor(self, database_url: str) -> Ingestor:
        return Ingestor(database_url, self.events(), consumer=self.consumer, engines=self.engines,
                        geoip_database=self.geoip_database or None,
                        retry_seconds=self.retry_seconds if self.retry_seconds >= 0 else None,
                        backoff_seconds=self.backoff_seconds)

    # -- what the checks read (one consistent snapshot per call) -----------------------------------------------
    def day_counts(self, day: date) -> dict[str, int]:
        return dict(self.snapshot().query("SELECT event_type, count(*) FROM platform_events GROUP BY 1",
                                          days=[day]))

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        return self.snapshot().query("SELECT event_id, count(*) FROM platform_events GROUP BY 1 HAVING count(*) > 1 "
                                     "ORDER BY 2 DESC, 1 LIMIT ?", [limit], days=[day])

    def event_ids(self, day: date) -> set[str]:
        return {r[0] for r in self.snapshot().query("SELECT event_id FROM platform_events", days=[day])}

    def amounts(self, day: date, snapshot: LakeSnapshot | None = None) -> dict[str, tuple[Decimal, int]]:
        """Per event type of ``day`` (in ``snapshot``, the latest by default): (exact sum of the typed amounts,
        events whose amount does not fit), as an engine's ``amounts(day)`` reads it (rows of files older than the
        typed columns get theirs first)."""
        dataset = (snapshot or self.snapshot()).dataset(days=[day])
        columns = [c for c in ("event_type", "amount", "amount_overflow") if c in dataset.schema.names]
        financial = pc.field("event_type").isin(list(amount_fields()))
        rows = dataset.to_table(columns=columns, filter=financial)
        if "amount_overflow" not in columns or rows.column("amount_overflow").null_count:
            rows = fill_amounts(dataset.to_table(columns=[*columns, "event_data"], filter=financial))
        return amount_totals(rows)

    def schema_problems(self, day: date) -> list[str]:
        """How the table's schema differs from the declared lake schema (empty when it matches)."""
        table = self.events().table()
        if table is None:
            return []
        schema = pa.schema(table.schema().to_arrow())
        declared = LAKE_SCHEMA
        actual = {f.name: f.type for f in schema}
        problems = [f"column {f.name}: {actual.get(f.name, 'missing')} where {f.type} is declared"
                    for f in declared if str(actual.get(f.name)) != str(f.type)]
        problems += [f"column {name}: not declared" for name in actual if name not in declared.names]
        return problems

    def query(self, sql: str, parameters: list | None = None) -> list[tuple]:
        """DuckDB SQL where ``platform_events`` is the lake's latest snapshot (checks, tests, notebooks)."""
        return self.snapshot().query(sql, parameters)

"""Every asset key of the code location, in one place: what sensors, jobs, checks, the CLI, the docs and the tests
name.

The key's first part is the store that holds the data (``postgres``, ``lake``, ``bigquery``, ``redshift``) or
``pipeline`` for the work between stores; its last part is what the Dagster UI shows as the node's label on the
asset graph, so it names the store too and is unique across the code location (``postgres_events`` and
``lake_events``, ``postgres_aggregations_hourly`` and ``lake_aggregations_hourly``, ``bigquery_events``): no two
nodes read the same at a glance, and a truncated label still starts with its store.

Keys before this scheme (an existing Dagster instance keeps their history; docs/architecture.md#asset-keys)
are in :data:`RENAMED_FROM`.
"""

from __future__ import annotations

from dagster import AssetKey

#: The platform's events as emitted into PostgreSQL (``platform_event_store``), observed by the ingest sensor.
INCOMING_EVENTS = AssetKey(["postgres", "postgres_events"])
#: The sweep: validates and enriches the committed events into the lake.
ENRICHED_EVENTS = AssetKey(["pipeline", "enriched_events"])
#: The dead letter sent back through.
DEAD_LETTER_REPLAY = AssetKey(["pipeline", "dead_letter_replay"])
#: The lake's events table (Delta, ``platform_events``), one partition per UTC day.
LAKE_EVENTS = AssetKey(["lake", "lake_events"])
#: Compaction, checkpoint and vacuum of the lake's tables.
LAKE_MAINTENANCE = AssetKey(["lake", "lake_maintenance"])
#: The dashboard's figures (``platform_metrics_realtime``).
REALTIME_METRICS = AssetKey(["postgres", "platform_metrics_realtime"])
#: Retention runs (``retention_runs``) and GDPR erasure requests (``gdpr_erasure_requests``).
RETENTION_RUNS = AssetKey(["postgres", "retention_runs"])
ERASURE_REQUESTS = AssetKey(["postgres", "gdpr_erasure_requests"])
#: The pipeline's health, observed every minute.
PIPELINE_STATUS = AssetKey(["pipeline", "pipeline_status"])


def postgres_aggregations_key(granularity: str) -> AssetKey:
    """PostgreSQL's ``event_aggregations`` rows of one granularity (``hourly``, ``daily``, ``weekly``)."""
    return AssetKey(["postgres", f"postgres_aggregations_{granularity}"])


def lake_aggregations_key(granularity: str) -> AssetKey:
    """The lake's ``event_aggregations`` Delta table, the partition ``aggregation_type=<granularity>``."""
    return AssetKey(["lake", f"lake_aggregations_{granularity}"])


def engine_events_key(engine: str) -> AssetKey:
    """A remote engine's (``bigquery``, ``redshift``) ``platform_events`` table."""
    return AssetKey([engine, f"{engine}_events"])


def engine_aggregations_key(engine: str, granularity: str) -> AssetKey:
    """A remote engine's ``event_aggregations`` rows of one granularity."""
    return AssetKey([engine, f"{engine}_aggregations_{granularity}"])


def engine_delivery_key(engine: str) -> AssetKey:
    """The delivery of the lake's new commits into a remote engine."""
    return AssetKey(["pipeline", f"{engine}_delivery"])


GRANULARITIES = ("hourly", "daily", "weekly")
ENGINES = ("bigquery", "redshift")

#: new key -> the key it had before (what an upgraded instance's history, runs and backfills still name).
RENAMED_FROM: dict[AssetKey, AssetKey] = {
    INCOMING_EVENTS: AssetKey(["postgres", "platform_events"]),
    LAKE_EVENTS: AssetKey(["lake", "platform_events"]),
    LAKE_MAINTENANCE: AssetKey(["lake", "maintenance"]),
    PIPELINE_STATUS: AssetKey(["pipeline", "status"]),
    **{postgres_aggregations_key(g): AssetKey(["postgres", f"event_aggregations_{g}"]) for g in GRANULARITIES},
    **{lake_aggregations_key(g): AssetKey(["lake", f"event_aggregations_{g}"]) for g in GRANULARITIES},
    **{engine_events_key(e): AssetKey([e, "platform_events"]) for e in ENGINES},
    **{engine_aggregations_key(e, g): AssetKey([e, f"event_aggregations_{g}"]) for e in ENGINES
       for g in GRANULARITIES},
}

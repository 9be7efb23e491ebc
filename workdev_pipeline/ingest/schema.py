"""The warehouse's events table (the seed's warehouse schema, plus each event's typed amount) as an Arrow schema,
and the conversion of an extracted, enriched batch into it."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from workdev_pipeline.aggregations.amounts import LAKE_DECIMAL, event_amounts
from workdev_pipeline.enrichment import DEVICE_INFO_TYPE, GEO_LOCATION_TYPE

JSON = pa.json_(pa.string())

WAREHOUSE_SCHEMA = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),
    pa.field("event_type", pa.string(), nullable=False),
    pa.field("event_category", pa.string(), nullable=False),
    pa.field("user_id", pa.string()),
    pa.field("user_role", pa.string()),
    pa.field("user_tenure_days", pa.int32()),
    pa.field("entity_type", pa.string()),
    pa.field("entity_id", pa.string()),
    pa.field("event_data", JSON),
    pa.field("metadata", JSON),
    pa.field("source", pa.string()),
    pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("session_id", pa.string()),
    pa.field("geo_location", GEO_LOCATION_TYPE),
    pa.field("device_info", DEVICE_INFO_TYPE),
    pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    # the event type's amount field (catalog.amount_fields) typed exactly, NULL when it does not fit DECIMAL(38, 9)
    # (then amount_overflow is true; event_data keeps every digit): aggregations/amounts.py. Added last (schema
    # evolution of older lakes and engine tables).
    pa.field("amount", LAKE_DECIMAL),
    pa.field("amount_overflow", pa.bool_()),
])

#: Columns copied as they come from PostgreSQL (see the pipeline_event_rows view).
_COPIED = ("event_id", "event_type", "event_category", "user_id", "user_role", "user_tenure_days", "entity_type",
           "entity_id", "source", "timestamp", "session_id")


def warehouse_table(batch: pa.RecordBatch | pa.Table, geo_location: pa.Array, device_info: pa.Array,
                    ingested_at: datetime | pa.Array) -> pa.Table:
    """Rows of ``batch`` (extracted events) in the warehouse schema, with their enrichment; ``ingested_at``
    one instant for all rows, or one per row."""
    n = batch.num_rows
    columns: dict[str, pa.Array] = {}
    for name in _COPIED:
        columns[name] = batch.column(name).cast(WAREHOUSE_SCHEMA.field(name).type)
    for name in ("event_data", "metadata"):
        columns[name] = pa.ExtensionArray.from_storage(JSON, batch.column(name).cast(pa.string()))
    columns["geo_location"] = geo_location
    columns["device_info"] = device_info
    stamp = pa.timestamp("us", tz="UTC")
    columns["ingested_at"] = (ingested_at.cast(stamp) if isinstance(ingested_at, pa.Array | pa.ChunkedArray)
                              else pa.repeat(pa.scalar(ingested_at, stamp), n))
    columns["amount"], columns["amount_overflow"] = event_amounts(columns["event_type"], columns["event_data"])
    return pa.Table.from_arrays([columns[f.name] for f in WAREHOUSE_SCHEMA], schema=WAREHOUSE_SCHEMA)

"""Helpers of the lake tests: warehouse rows built as the ingestion engine builds them, and a lake in a temp dir."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from workdev_pipeline.enrichment import DEVICE_INFO_TYPE, GEO_LOCATION_TYPE
from workdev_pipeline.ingest.schema import warehouse_table
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation

COUNTRIES = ("DE", "FR", "US", "BR")


def make_lake(root: Path) -> EventLake:
    return EventLake(LakeLocation.from_env(str(root)))


def user_ids(n: int, seed: int = 0) -> list[str]:
    return [str(uuid.UUID(int=(seed << 64) + i + 1)) for i in range(n)]


def events(day: date, n: int, *, start: int = 0, users: list[str] | None = None,
           ingested_at: datetime | None = None) -> pa.Table:
    """``n`` enriched events of ``day`` (warehouse schema) with deterministic ids ``start .. start + n - 1``: one a
    second from midnight, users in turn, JSON payloads and enrichment structs filled."""
    users = users or user_ids(10)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    numbers = range(start, start + n)
    batch = pa.RecordBatch.from_pydict({
        "event_id": [str(uuid.UUID(int=(day.toordinal() << 32) + i)) for i in numbers],
        "event_type": ["user.login" if i % 3 else "project.viewed" for i in numbers],
        "event_category": ["user_action" if i % 3 else "engagement" for i in numbers],
        "user_id": [users[i % len(users)] for i in numbers],
        "user_role": ["developer"] * n,
        "user_tenure_days": [i % 400 for i in numbers],
        "entity_type": ["project"] * n,
        "entity_id": [f"p-{i % 7}" for i in numbers],
        "source": ["web"] * n,
        "timestamp": pa.array([midnight + timedelta(seconds=i % 86_400) for i in numbers],
                              pa.timestamp("us", tz="UTC")),
        "session_id": [f"s-{i // 20}" for i in numbers],
        "event_data": [f'{{"n": {i}, "method": "github"}}' for i in numbers],
        "metadata": ['{"ip_address": "203.0.113.7"}'] * n,
    })
    geo = pa.array([{"country": COUNTRIES[i % len(COUNTRIES)], "region": None, "city": None} for i in numbers],
                   GEO_LOCATION_TYPE)
    device = pa.array([{"device_type": "desktop", "browser": "Firefox", "os": "Linux"}] * n, DEVICE_INFO_TYPE)
    return warehouse_table(batch, geo, device, ingested_at or midnight + timedelta(days=1))


def parquet_files_on_disk(table_dir: Path, day: date) -> list[Path]:
    return sorted((table_dir / f"event_date={day.isoformat()}").glob("*.parquet"))


def money_events(day: date, budgets: list[object], *, start: int) -> pa.Table:
    """``events`` made ``project.created`` events with these budgets (JSON text as the client writes it)."""
    table = events(day, len(budgets), start=start)
    for name, values in (("event_type", ["project.created"] * len(budgets)),
                         ("event_data", [f'{{"title": "t", "budget": {b}, "project_type": "fixed"}}'
                                         for b in budgets])):
        index = table.schema.get_field_index(name)
        column = pa.array(values)
        if name == "event_data":
            column = pa.ExtensionArray.from_storage(table.schema.field(name).type, column)
        table = table.set_column(index, table.schema.field(name), column)
    return table.drop_columns(["amount", "amount_overflow"])  # as written before the typed amounts


def old_lake(lake: EventLake, rows: pa.Table) -> None:
    """Make ``lake`` a lake of the schema before the typed amounts (no ``amount``/``amount_overflow``) holding
    ``rows`` (warehouse rows without those columns), written as such a lake's writer wrote them."""
    from deltalake import DeltaTable, write_deltalake

    from workdev_pipeline.lake.events import LAKE_SCHEMA, TABLE_CONFIGURATION

    old_schema = pa.schema([f for f in LAKE_SCHEMA if f.name not in ("amount", "amount_overflow")])
    DeltaTable.create(lake.uri, schema=old_schema, partition_by=["event_date"], configuration=TABLE_CONFIGURATION)
    columns = [c.cast(pa.string()) if isinstance(c.type, pa.BaseExtensionType) else c for c in rows.columns]
    columns.append(pc.cast(rows.column("timestamp"), pa.date32()))
    write_deltalake(lake.uri, pa.Table.from_arrays(columns, schema=old_schema), mode="append")

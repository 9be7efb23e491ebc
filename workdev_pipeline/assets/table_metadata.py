"""Dagster's standard table metadata for the lake's events table: its column schema (types from the lake's Arrow
schema, a description per column, personal columns tagged ``pii``), its table name, owners and tags."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from dagster import TableColumn, TableSchema

from workdev_pipeline.lake.events import LAKE_SCHEMA, TABLE

#: Who answers for the pipeline's tables (shown on every asset page).
OWNERS = ["team:data-platform"]

#: Column -> (description, personal). Personal columns hold, or may hold, data about a person: erasure reaches
#: them (docs/gdpr.md), the analyst role sees them pseudonymised (docs/privacy.md).
LAKE_COLUMNS: dict[str, tuple[str, bool]] = {
    "event_id": ("The event's id (UUID): unique in the table, the re-send key of producers.", False),
    "event_type": ("Catalog type, e.g. project.created (see event_schemas).", False),
    "event_category": ("The type's category: user, project, proposal, milestone, payment, message, review, "
                       "search, system.", False),
    "user_id": ("The acting user (UUID); NULL for anonymous events and after erasure.", True),
    "user_role": ("The user's role when the event was swept (freelancer, client, admin).", False),
    "user_tenure_days": ("Days between the user's sign-up and the event.", False),
    "entity_type": ("The kind of entity the event is about (project, proposal, ...).", False),
    "entity_id": ("The entity's id.", False),
    "event_data": ("The payload as JSON text, as emitted (exact numbers); personal fields marked in the "
                   "catalog.", True),
    "metadata": ("Client context as JSON text (platform, app version; IP address and user agent: personal).",
                 True),
    "source": ("Where the event came from (app, api, backend, ...).", False),
    "timestamp": ("When the event happened (UTC).", False),
    "session_id": ("The client session (UUID); replaced when its user is erased.", True),
    "geo_location": ("Country, region and city derived from the IP address at the sweep.", True),
    "device_info": ("Device type, browser and OS derived from the user agent at the sweep.", False),
    "ingested_at": ("When the sweep (or rebuild) wrote the event (UTC).", False),
    "event_date": ("The UTC day of timestamp: the table's partition column.", False),
}


def column_type(data_type: pa.DataType) -> str:
    """A short, readable type name (``struct<country: string, ...>`` for structs)."""
    if pa.types.is_struct(data_type):
        return "struct<" + ", ".join(f"{f.name}: {column_type(f.type)}" for f in data_type) + ">"
    return str(data_type)


def lake_column_schema() -> TableSchema:
    """The lake events table's columns, in order; a column without a description is a bug (tested)."""
    columns = []
    for field in LAKE_SCHEMA:
        description, personal = LAKE_COLUMNS[field.name]
        columns.append(TableColumn(field.name, column_type(field.type), description=description,
                                   tags={"pii": "true"} if personal else {}))
    return TableSchema(columns=columns)


def lake_table_metadata() -> dict[str, Any]:
    """Definition metadata of the lake's events asset: column schema and table name."""
    return {"dagster/column_schema": lake_column_schema(), "dagster/table_name": f"lake.{TABLE}"}

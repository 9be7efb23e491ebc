"""Dagster's standard table metadata of the pipeline's tables: the column schema (a description per column,
personal columns tagged ``pii``) and the table name of the lake's events table (types from the lake's Arrow schema)
and of the aggregations, in PostgreSQL (``event_aggregations``) and in the lake (its Delta table)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import pyarrow as pa
from dagster import TableColumn, TableSchema
from deltalake import DeltaTable

from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA
from workdev_pipeline.lake.aggregations import TABLE as AGGREGATIONS_TABLE
from workdev_pipeline.lake.events import LAKE_SCHEMA, TABLE, LakeSnapshot

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
    "amount": ("For financial types, the catalog's amount field of event_data, exactly (DECIMAL(38, 9)); NULL when "
               "the type has none, the event carries none, or it does not fit (then amount_overflow).", False),
    "amount_overflow": ("True when the event's amount does not fit DECIMAL(38, 9) (amount is NULL, event_data "
                        "keeps every digit); NULL in rows of files written before the column existed.", False),
    "event_date": ("The UTC day of timestamp: the table's partition column.", False),
}


#: Column -> description of ``event_aggregations`` (PostgreSQL's and the lake's: the same columns). Nothing
#: personal: counts per period and type.
AGGREGATION_COLUMNS: dict[str, str] = {
    "aggregation_type": "hourly, daily or weekly (the lake table's partition column).",
    "period_start": "Start of the closed UTC period (hour, day, or week from Monday 00:00).",
    "period_end": "End of the period (exclusive).",
    "event_type": "Catalog type of the events counted.",
    "event_category": "The type's category.",
    "total_events": "Events of the type in the period.",
    "unique_users": "Distinct user_id of those events (exact; anonymous events not counted).",
    "unique_sessions": "Distinct session_id of those events (exact).",
    "amount_sum": "For financial types, the sum of the catalog's amount field (exact in PostgreSQL; DECIMAL(38, 9) "
                  "in the lake, NULL when it does not fit).",
    "computed_at": "When the row was computed (UTC).",
    "amount_overflow": "True when the exact sum does not fit DECIMAL(38, 9) (the lake and the engines hold NULL).",
}

#: PostgreSQL's type of each Arrow type of the aggregation schema.
_POSTGRES_TYPES = {"string": "text", "timestamp[us, tz=UTC]": "timestamptz", "int64": "bigint", "bool": "boolean"}


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
    return {"dagster/column_schema": lake_column_schema(), "dagster/table_name": LAKE_EVENTS_TABLE}


LAKE_EVENTS_TABLE = f"lake.{TABLE}"
POSTGRES_AGGREGATIONS_TABLE = "postgres.event_aggregations"
LAKE_AGGREGATIONS_TABLE = f"lake.{AGGREGATIONS_TABLE}"


def aggregation_column_schema(store: str) -> TableSchema:
    """The aggregation table's columns in ``store`` (``postgres``: PostgreSQL's types, ``lake``: the Delta table's
    Arrow types); a column without a description is a bug (tested)."""
    def typed(data_type: pa.DataType) -> str:
        if store == "lake":
            return column_type(data_type)
        return "numeric" if pa.types.is_decimal(data_type) else _POSTGRES_TYPES[str(data_type)]

    return TableSchema(columns=[TableColumn(f.name, typed(f.type), description=AGGREGATION_COLUMNS[f.name])
                                for f in AGGREGATION_SCHEMA])


def aggregation_table_metadata(store: str) -> dict[str, Any]:
    """Definition metadata of an aggregation asset in ``store`` (``postgres`` or ``lake``)."""
    table = POSTGRES_AGGREGATIONS_TABLE if store == "postgres" else LAKE_AGGREGATIONS_TABLE
    return {"dagster/column_schema": aggregation_column_schema(store), "dagster/table_name": table}


def lake_rows(snapshot: LakeSnapshot) -> tuple[int, Counter[date]]:
    """The events table's rows at the snapshot's version, in all and per day, from the Delta log (no data read)."""
    files = snapshot.files()
    per_day: Counter[date] = Counter()
    for day, rows in zip(files.column("event_date").to_pylist(), files.column("num_records").to_pylist(),
                         strict=True):
        per_day[day] += rows or 0
    return sum(per_day.values()), per_day


def lake_aggregation_rows(table: DeltaTable | None, aggregation_type: str) -> int:
    """Rows of ``aggregation_type`` in the lake's aggregation table at ``table``'s version, from the Delta log."""
    if table is None:
        return 0
    actions = pa.table(table.get_add_actions(flatten=True))
    kinds = actions.column("partition.aggregation_type").to_pylist()
    return sum(n or 0 for k, n in zip(kinds, actions.column("num_records").to_pylist(), strict=True)
               if k == aggregation_type)

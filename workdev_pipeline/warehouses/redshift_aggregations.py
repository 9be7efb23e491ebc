"""The Redshift engine's ``event_aggregations`` (a :class:`~workdev_pipeline.warehouses.remote.RemoteAggregationTable`):
``AGGREGATION_SCHEMA`` in the engine's schema (``create_aggregations_table.sql``: DISTSTYLE ALL, sorted by
aggregation type and period; amounts NUMERIC(38, 9), NULL with ``amount_overflow`` when a sum does not fit).

A range of periods is replaced in one transaction: its rows deleted (``delete_aggregations.sql``), the new rows
inserted by multi-row ``INSERT ... VALUES`` with bound parameters -- aggregates are small (a day's hours of the
catalog's event types: a few thousand rows), so no staging table or S3 COPY is needed. Batches are powers of two
of rows (at most :data:`BATCH_ROWS`), so that the driver sees few distinct statement texts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import redshift_connector

from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA
from workdev_pipeline.warehouses.redshift import RedshiftTable, quote_identifier
from workdev_pipeline.warehouses.remote import check_aggregation_rows

TABLE = "event_aggregations"
COLUMNS: tuple[str, ...] = tuple(AGGREGATION_SCHEMA.names)
#: Rows per INSERT at most (a power of two; 10 parameters a row).
BATCH_ROWS = 512


def batch_sizes(rows: int, most: int = BATCH_ROWS) -> Iterator[int]:
    """``rows`` as batches of ``most`` rows, the rest as decreasing powers of two."""
    while rows:
        size = most if rows >= most else 1 << (rows.bit_length() - 1)
        yield size
        rows -= size


class RedshiftAggregationTable(RedshiftTable):
    """``<schema>.event_aggregations`` on Redshift (or on the PostgreSQL stand-in, ``dialect="postgres"``)."""

    table_name = TABLE

    def ensure_table(self) -> None:
        with self._transaction() as cursor:
            cursor.execute(self.statement("create_schema"))
            cursor.execute(self.statement("create_aggregations_table"))
        self._add_missing_columns("create_aggregations_table")  # amount_overflow, on a table older than it

    def insert_statement(self, rows: int) -> str:
        row = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
        return self.statement("insert_aggregations", columns=", ".join(quote_identifier(c) for c in COLUMNS),
                              rows=", ".join([row] * rows))

    def replace_aggregations(self, aggregation_type: str, start: datetime, end: datetime, rows: pa.Table,
                             load_id: str) -> int:
        check_aggregation_rows(rows, aggregation_type, start, end)
        values = list(zip(*(rows.column(c).to_pylist() for c in COLUMNS), strict=True))
        with self._transaction() as cursor:
            cursor.execute(self.statement("delete_aggregations"), (aggregation_type, start, end))
            self._insert(cursor, values)
        return len(values)

    def _insert(self, cursor: redshift_connector.Cursor, values: list[tuple]) -> None:
        offset = 0
        statements: dict[int, str] = {}
        for size in batch_sizes(len(values)):
            if size not in statements:
                statements[size] = self.insert_statement(size)
            batch = values[offset:offset + size]
            cursor.execute(statements[size], tuple(v for row in batch for v in row))
            offset += size

    def aggregation_rows(self, aggregation_type: str, start: datetime, end: datetime) -> list[tuple]:
        return self._query(self.statement("aggregation_rows"), (aggregation_type, start, end))

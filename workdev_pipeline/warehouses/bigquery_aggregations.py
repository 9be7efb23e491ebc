"""The BigQuery engine's ``event_aggregations`` (a :class:`~workdev_pipeline.warehouses.remote.RemoteAggregationTable`):
``AGGREGATION_SCHEMA`` as a table partitioned by MONTH of ``period_start`` (a day partition would hold a few
hundred rows) and clustered by aggregation type and event type. ``amount_sum`` is NUMERIC (precision 38, scale 9:
exactly the lake's ``decimal128(38, 9)``), NULL with ``amount_overflow`` true when a sum does not fit (PostgreSQL
holds it exactly); ``amount_overflow`` is added to a table created before it (``ensure_table``).

A range of periods is replaced as the events' days are (``bigquery.py``): the rows go into a staging table by a
Parquet load job with a deterministic id, then ``replace_aggregations.sql`` -- one MERGE -- makes the range hold
exactly them; a range without rows is emptied by ``delete_aggregations.sql``.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from google.cloud import bigquery

from workdev_pipeline.lake.aggregations import AGGREGATION_SCHEMA
from workdev_pipeline.warehouses.bigquery import BigQueryTable, quote_identifier, quote_table
from workdev_pipeline.warehouses.remote import check_aggregation_rows

TABLE = "event_aggregations"
#: The columns that identify a row (the MERGE's key).
KEY = ("aggregation_type", "period_start", "event_type", "event_category")


class BigQueryAggregationTable(BigQueryTable):
    """``<project>.<dataset>.event_aggregations``."""

    default_table = TABLE
    default_schema = AGGREGATION_SCHEMA
    partitioning = (bigquery.TimePartitioningType.MONTH, "period_start")
    clustering_fields = ("aggregation_type", "event_type")

    def _range_parameters(self, aggregation_type: str, start: datetime,
                          end: datetime) -> list[bigquery.ScalarQueryParameter]:
        return [bigquery.ScalarQueryParameter("aggregation_type", "STRING", aggregation_type),
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", end)]

    def replace_aggregations(self, aggregation_type: str, start: datetime, end: datetime, rows: pa.Table,
                             load_id: str) -> int:
        check_aggregation_rows(rows, aggregation_type, start, end)
        self._ensure_once()
        parameters = self._range_parameters(aggregation_type, start, end)
        if not rows.num_rows:
            self._query(self.statement("delete_aggregations"), parameters)
            return 0
        with tempfile.TemporaryDirectory(prefix="workdev_bq_aggregations_") as folder:
            path = Path(folder) / "rows.parquet"
            pq.write_table(rows.select(self.schema.names).cast(self.schema), path)
            self.load_file(self._staging(load_id), path, load_id)
        columns = self.schema.names
        self._query(self.statement(
            "replace_aggregations",
            staging=quote_table(self.project, self.dataset, self.staging_table_name(load_id)),
            columns=", ".join(quote_identifier(c) for c in columns),
            held_columns=", ".join(f"held.{quote_identifier(c)}" for c in columns),
            insert_values=", ".join(f"source.{quote_identifier(c)}" for c in columns),
            update_set=", ".join(f"{quote_identifier(c)} = source.{quote_identifier(c)}" for c in columns
                                 if c not in KEY),
        ), parameters)
        self._drop_staging(load_id)
        return rows.num_rows

    def aggregation_rows(self, aggregation_type: str, start: datetime, end: datetime) -> list[tuple]:
        return [tuple(row.values()) for row in self._query(self.statement("aggregation_rows"),
                                                          self._range_parameters(aggregation_type, start, end))]

"""What the BigQuery and Redshift resources share: a remote engine is its own consumer (watermark, dead letter,
sync status) with a mirror of its day files on local disk (the files its load jobs are made from, and what
retention and erasure rewrite), loaded into the engine's table by the ingestion engine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING

from workdev_pipeline.ingest.ingestor import Ingestor
from workdev_pipeline.ingest.local_store import LocalEventFiles, schema_problems
from workdev_pipeline.settings import workdev_home
from workdev_pipeline.warehouses.remote import RemoteAggregationTable, RemoteEventTable

if TYPE_CHECKING:
    from workdev_pipeline.aggregations.delivery import AggregationDelivery
    from workdev_pipeline.aggregations.files import AggregateFiles
    from workdev_pipeline.aggregations.periods import Granularity


class RemoteWarehouseMixin:
    """The warehouse interface (``resources/warehouse.py``) over :meth:`open_table`; the resource class declares
    ``consumer``, ``mirror_dir``, ``geoip_database``, ``retries`` and ``backoff_seconds``."""

    consumer: str
    mirror_dir: str
    geoip_database: str
    retries: int
    backoff_seconds: float

    def open_table(self) -> RemoteEventTable:
        """A client of the engine's events table (the caller closes it)."""
        raise NotImplementedError

    def open_aggregations(self) -> RemoteAggregationTable:
        """A client of the engine's ``event_aggregations`` table (the caller closes it)."""
        raise NotImplementedError

    @contextmanager
    def table(self) -> Iterator[RemoteEventTable]:
        table = self.open_table()
        try:
            yield table
        finally:
            table.close()

    @contextmanager
    def aggregations(self) -> Iterator[RemoteAggregationTable]:
        table = self.open_aggregations()
        try:
            yield table
        finally:
            table.close()

    def files(self) -> LocalEventFiles:
        """The mirror: the engine's day files, exactly as the local warehouse lays them out."""
        return LocalEventFiles(self.mirror_dir or workdev_home() / "engines" / self.consumer)

    def ingestor(self, database_url: str) -> Ingestor:
        return Ingestor(database_url, self.files(), consumer=self.consumer,
                        geoip_database=self.geoip_database or None, retries=self.retries,
                        backoff_seconds=self.backoff_seconds, remote=self.open_table())

    def day_counts(self, day: date) -> dict[str, int]:
        with self.table() as table:
            return table.day_counts(day)

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        with self.table() as table:
            return table.duplicate_event_ids(day, limit)

    def event_ids(self, day: date) -> set[str]:
        with self.table() as table:
            return table.event_ids(day)

    def governance(self, database_url: str) -> list:  # -> list[GovernedWarehouse]
        """Retention and erasure rewrite the mirror's days exactly as the local warehouse's; the ingestion engine
        replaces each rewritten day in the engine's table before swapping it into the mirror."""
        from workdev_pipeline.governance.warehouse import LocalGovernedWarehouse

        return [LocalGovernedWarehouse(self.ingestor(database_url))]

    def user_row_count(self, user_id: str) -> int:
        with self.table() as table:
            return table.user_row_count(user_id)

    def schema_problems(self, day: date) -> list[str]:
        """The mirror's files of ``day`` against the declared schema (what every load is made from)."""
        return schema_problems(self.files(), day)

    def deliver_aggregations(self, aggregates: AggregateFiles, granularity: Granularity, start: datetime,
                             end: datetime) -> AggregationDelivery:
        """Replace the engine's ``granularity`` periods in [start, end) with the local aggregation files' rows
        (retried with this engine's retries and backoff)."""
        from workdev_pipeline.aggregations.delivery import deliver_aggregations

        with self.aggregations() as table:
            return deliver_aggregations(aggregates, table, granularity, start, end, retries=self.retries,
                                        backoff_seconds=self.backoff_seconds)

    def aggregation_rows(self, aggregation_type: str, start: datetime, end: datetime) -> list[tuple]:
        """The engine's rows of those periods (see ``RemoteAggregationTable.aggregation_rows``)."""
        with self.aggregations() as table:
            return table.aggregation_rows(aggregation_type, start, end)

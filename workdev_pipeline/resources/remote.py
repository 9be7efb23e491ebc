"""What the BigQuery and Redshift resources share: a remote engine is configuration plus a factory of its tables
(``open_table``, ``open_aggregations``); it is fed from the lake (:mod:`workdev_pipeline.lake.delivery`: the lake
version it delivered is kept in PostgreSQL), governed in place (:mod:`workdev_pipeline.governance.engines`), and its
checks query the engine itself. Nothing of it lives on local disk."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from workdev_pipeline.warehouses.remote import RemoteAggregationTable, RemoteEventTable

if TYPE_CHECKING:
    from workdev_pipeline.aggregations.delivery import AggregationDelivery
    from workdev_pipeline.aggregations.periods import Granularity
    from workdev_pipeline.governance.engines import EngineGovernedWarehouse
    from workdev_pipeline.lake.aggregations import AggregationLake
    from workdev_pipeline.lake.delivery import Delivery, LakeDelivery
    from workdev_pipeline.lake.events import EventLake


class RemoteWarehouseMixin:
    """The engine's interface over :meth:`open_table`; the resource class declares ``retries`` and
    ``backoff_seconds`` and names its engine (``engine``: the resource key, ``bigquery`` or ``redshift``)."""

    retries: int
    backoff_seconds: float

    @property
    def engine(self) -> str:
        raise NotImplementedError

    @property
    def consumer(self) -> str:
        """What the engine's governance (refresh queue, ledger counts) and reports are kept under: its name."""
        return self.engine

    def open_table(self) -> RemoteEventTable:
        """A client of the engine's events table (the caller closes it)."""
        raise NotImplementedError

    def open_aggregations(self) -> RemoteAggregationTable:
        """A client of the engine's ``event_aggregations`` table (the caller closes it)."""
        raise NotImplementedError

    def ping(self, timeout_seconds: float = 10.0) -> None:
        """Reach the engine with one cheap call (no query of the data); raise the client's error when it cannot."""
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

    # -- from the lake -----------------------------------------------------------------------------------------
    @contextmanager
    def delivery(self, database_url: str, lake: EventLake) -> Iterator[LakeDelivery]:
        """Deliveries from ``lake`` into this engine (its table closed at the end)."""
        from workdev_pipeline.lake.delivery import LakeDelivery

        with self.table() as table:
            yield LakeDelivery(database_url, lake, table, retries=self.retries, backoff_seconds=self.backoff_seconds)

    def deliver(self, database_url: str, lake: EventLake, run_id: str | None = None) -> Delivery:
        """Load what the lake committed since this engine's last delivery, exactly once."""
        with self.delivery(database_url, lake) as delivery:
            return delivery.deliver(run_id=run_id)

    def replace_days(self, database_url: str, lake: EventLake, days: Sequence[date],
                     run_id: str | None = None) -> Delivery:
        """Make ``days`` hold exactly the lake's current rows of them (one atomic replace per day)."""
        with self.delivery(database_url, lake) as delivery:
            return delivery.replace_days(days, run_id=run_id)

    def governance(self, database_url: str, lake: EventLake | None = None) -> list[EngineGovernedWarehouse]:
        """Retention and erasure in the engine, in place; the erased events' rows come from ``lake`` (by default
        the one ``WORKDEV_LAKE_URI`` names), which must be refreshed before this engine."""
        from workdev_pipeline.governance.engines import EngineGovernedWarehouse
        from workdev_pipeline.lake.events import EventLake
        from workdev_pipeline.lake.location import LakeLocation

        return [EngineGovernedWarehouse(database_url, lake or EventLake(LakeLocation.from_env()), self.open_table())]

    # -- what the checks read: the engine itself ---------------------------------------------------------------
    def days(self) -> set[date]:
        with self.table() as table:
            return table.days()

    def day_counts(self, day: date) -> dict[str, int]:
        with self.table() as table:
            return table.day_counts(day)

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        with self.table() as table:
            return table.duplicate_event_ids(day, limit)

    def event_ids(self, day: date) -> set[str]:
        with self.table() as table:
            return table.event_ids(day)

    def user_row_count(self, user_id: str) -> int:
        with self.table() as table:
            return table.user_row_count(user_id)

    def amounts(self, day: date) -> dict[str, tuple[Decimal, int]]:
        with self.table() as table:
            return table.amounts(day)

    # -- aggregations ------------------------------------------------------------------------------------------
    def deliver_aggregations(self, aggregates: AggregationLake, granularity: Granularity, start: datetime,
                             end: datetime) -> AggregationDelivery:
        """Replace the engine's ``granularity`` periods in [start, end) with the lake's aggregation rows (retried
        with this engine's retries and backoff)."""
        from workdev_pipeline.aggregations.delivery import deliver_aggregations

        with self.aggregations() as table:
            return deliver_aggregations(aggregates, table, granularity, start, end, retries=self.retries,
                                        backoff_seconds=self.backoff_seconds)

    def aggregation_rows(self, aggregation_type: str, start: datetime, end: datetime) -> list[tuple]:
        """The engine's rows of those periods (see ``RemoteAggregationTable.aggregation_rows``)."""
        with self.aggregations() as table:
            return table.aggregation_rows(aggregation_type, start, end)

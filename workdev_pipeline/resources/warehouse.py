"""The table interface: what the checks need of every store of the events (the lake, BigQuery, Redshift)."""

from __future__ import annotations

from datetime import date
from typing import Protocol


class Warehouse(Protocol):
    """One engine holding the events table, partitioned by UTC day of the event's timestamp."""

    #: The PostgreSQL consumer whose processed events the table must hold (the lake's sweep: ``lake``).
    consumer: str

    def day_counts(self, day: date) -> dict[str, int]:
        """Events held for ``day``, by event_type."""
        ...

    def duplicate_event_ids(self, day: date, limit: int = 20) -> list[tuple[str, int]]:
        """Event ids held more than once on ``day`` (with how often)."""
        ...

    def event_ids(self, day: date) -> set[str]:
        """Every event id held for ``day`` (cross-engine parity)."""
        ...

    def schema_problems(self, day: date) -> list[str]:
        """How the stored files of ``day`` differ from the declared schema (empty when they match)."""
        ...

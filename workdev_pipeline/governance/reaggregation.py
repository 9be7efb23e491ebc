"""Erasure's last step: the aggregation periods that counted erased users' events, recomputed from the anonymised
events in the same run (``event_aggregations`` in PostgreSQL and the lake's aggregation table), with the
aggregation engine the aggregation assets use (:class:`~workdev_pipeline.aggregations.engine.Aggregator`).

Which periods: every hour, day and week (Monday) holding an event of an erased request whose
``aggregations_recomputed_at`` is still empty -- this run's requests and any earlier one's (a run that died after
its warehouse refresh). Only closed periods are recomputed: an open one is first computed when it closes, from
events already anonymised. Then the requests' ``aggregations_recomputed_at`` is set. A crash before that leaves
them pending for the next erasure; a rebuild is idempotent (each period replaced whole), so redoing it is harmless.
Unique users and sessions are exact: each period is recomputed from its events, never patched. Every enabled remote
engine (BigQuery, Redshift) gets each recomputed range too (its ``event_aggregations`` replaced from the lake's rows),
before the requests are marked: an engine down leaves them pending.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import psycopg

from workdev_pipeline.aggregations.delivery import AggregationDelivery
from workdev_pipeline.aggregations.engine import Aggregator
from workdev_pipeline.aggregations.periods import DAILY, HOURLY, WEEKLY, Granularity
from workdev_pipeline.governance.common import governance_lock
from workdev_pipeline.lake.aggregations import AggregationLake
from workdev_pipeline.lake.events import EventLake
from workdev_pipeline.lake.location import LakeLocation
from workdev_pipeline.sql_files import query


class AggregationEngine(Protocol):
    """A remote engine's side of the aggregations (``RemoteWarehouseMixin``)."""

    consumer: str

    def deliver_aggregations(self, aggregates: AggregationLake, granularity: Granularity, start: datetime,
                             end: datetime) -> AggregationDelivery:
        ...


@dataclass
class Reaggregation:
    """What one erasure run recomputed."""

    request_ids: list[int] = field(default_factory=list)
    periods: dict[str, list[datetime]] = field(default_factory=dict)  # aggregation_type -> closed periods touched
    open_periods: dict[str, list[datetime]] = field(default_factory=dict)  # not closed yet: computed when they close
    ranges: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)  # what was rebuilt
    rows_written: dict[str, int] = field(default_factory=dict)
    rows_delivered: dict[str, int] = field(default_factory=dict)  # engine -> rows sent to its event_aggregations
    seconds: float = 0.0

    @property
    def periods_recomputed(self) -> int:
        return sum(len(p) for p in self.periods.values())


def touched_periods(hours: Iterable[datetime], now: datetime) -> dict[Granularity, tuple[list[datetime],
                                                                                        list[datetime]]]:
    """{granularity: (closed periods, open periods)} holding the given UTC hours."""
    out = {}
    for granularity in (HOURLY, DAILY, WEEKLY):
        starts = sorted({granularity.floor(h) for h in hours})
        out[granularity] = ([p for p in starts if p + granularity.step <= now],
                            [p for p in starts if p + granularity.step > now])
    return out


def rebuild_ranges(granularity: Granularity, periods: list[datetime]) -> list[tuple[datetime, datetime]]:
    """The periods as [start, end) ranges to rebuild: consecutive periods merged, and an hour's range stretched to
    the other touched hours of its UTC day (one read of the day's partition instead of one per hour; the hours in
    between are recomputed unchanged)."""
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted(periods):
        end = start + granularity.step
        if ranges and (ranges[-1][1] == start or (granularity is HOURLY and ranges[-1][0].date() == start.date())):
            ranges[-1] = (ranges[-1][0], end)
        else:
            ranges.append((start, end))
    return ranges


def reaggregate_erasures(database_url: str, location: LakeLocation, *, now: datetime | None = None,
                         engines: Sequence[AggregationEngine] = ()) -> Reaggregation:
    """Recompute the closed aggregation periods of every erased request still pending from the events of the lake
    at ``location``, and send them to ``engines`` (see the module)."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    result = Reaggregation()
    with psycopg.connect(database_url, autocommit=True) as conn, governance_lock(conn):
        pending = conn.execute(query("governance/pending_aggregations")).fetchall()
        if not pending:
            return result
        result.request_ids = [r[0] for r in pending]
        hours = {h.astimezone(UTC) for _, hs in pending for h in hs}
        aggregator = Aggregator(EventLake(location))
        for granularity, (closed, still_open) in touched_periods(hours, now).items():
            result.periods[granularity.name] = closed
            if still_open:
                result.open_periods[granularity.name] = still_open
            result.ranges[granularity.name] = rebuild_ranges(granularity, closed)
            for start, end in result.ranges[granularity.name]:
                outcome = aggregator.rebuild(conn, granularity, start, end, computed_at=now)
                result.rows_written[granularity.name] = result.rows_written.get(granularity.name, 0) + \
                    outcome.rows_written
                for engine in engines:
                    sent = engine.deliver_aggregations(aggregator.aggregates, granularity, start, end)
                    result.rows_delivered[engine.consumer] = result.rows_delivered.get(engine.consumer, 0) + sent.rows
        conn.execute(query("governance/aggregations_recomputed"), {"request_ids": result.request_ids})
    result.seconds = time.perf_counter() - started
    return result

"""The aggregations into a remote engine's ``event_aggregations`` (BigQuery, Redshift): the rows the lake's
aggregation table holds for a range of periods (``AggregationLake.read_range``: exactly what PostgreSQL's
``event_aggregations`` got from the same rebuild), replaced range by range in the engine
(:meth:`~workdev_pipeline.warehouses.remote.RemoteAggregationTable.replace_aggregations`: atomic, idempotent).

A range is sent in loads of at most a month of periods; a transient failure of the engine (network, service
unavailable) is retried with exponential backoff and jitter (tenacity), then raised: the periods stay as they
were in the engine, and the next materialization sends them again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from workdev_pipeline.aggregations.periods import Granularity, utc
from workdev_pipeline.lake.aggregations import AggregationLake
from workdev_pipeline.warehouses.remote import RemoteAggregationTable

log = logging.getLogger(__name__)

#: The periods one load covers at most.
LOAD_SPAN = timedelta(days=31)


@dataclass
class AggregationDelivery:
    """What one delivery sent (the engine's materialization metadata)."""

    engine: str
    aggregation_type: str
    range_start: datetime
    range_end: datetime
    loads: int = 0
    rows: int = 0
    periods: int = 0
    periods_with_rows: int = 0
    retries: int = 0
    seconds: float = 0.0
    per_period: dict[datetime, int] = field(default_factory=dict)  # rows sent per period start (periods with rows)


def load_ranges(granularity: Granularity, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) as consecutive ranges of at most :data:`LOAD_SPAN` of periods (at least one period each)."""
    periods = granularity.periods(start, end)
    per_load = max(1, LOAD_SPAN // granularity.step)
    return [(periods[i], min(periods[i] + per_load * granularity.step, utc(end)))
            for i in range(0, len(periods), per_load)]


def deliver_aggregations(aggregates: AggregationLake, table: RemoteAggregationTable, granularity: Granularity,
                         start: datetime, end: datetime, *, retries: int = 3,
                         backoff_seconds: float = 0.5) -> AggregationDelivery:
    """Make the engine's ``granularity`` periods in [start, end) hold what the lake's aggregation table holds."""
    started = time.perf_counter()
    start, end = utc(start), utc(end)
    outcome = AggregationDelivery(table.engine, granularity.name, start, end,
                                  periods=len(granularity.periods(start, end)))
    retrying = Retrying(stop=stop_after_attempt(retries + 1), reraise=True,
                        wait=wait_random_exponential(multiplier=backoff_seconds, max=30),
                        retry=retry_if_exception_type(table.transient_errors),
                        before_sleep=lambda state: log.warning("%s aggregations: attempt %d failed (%s); retrying",
                                                               table.engine, state.attempt_number,
                                                               state.outcome.exception()))
    retrying(table.ensure_table)
    outcome.retries += retrying.statistics.get("attempt_number", 1) - 1
    for load_start, load_end in load_ranges(granularity, start, end):
        rows = aggregates.read_range(granularity, load_start, load_end)
        load_id = (f"aggregations-{granularity.name}-{granularity.period_label(load_start)}-"
                   f"{granularity.period_label(load_end)}")
        retrying(table.replace_aggregations, granularity.name, load_start, load_end, rows, load_id)
        outcome.retries += retrying.statistics.get("attempt_number", 1) - 1
        outcome.loads += 1
        outcome.rows += rows.num_rows
        for period in rows.column("period_start").to_pylist():
            outcome.per_period[period] = outcome.per_period.get(period, 0) + 1
    outcome.periods_with_rows = len(outcome.per_period)
    outcome.seconds = time.perf_counter() - started
    log.info("%s: %s periods [%s, %s): %d rows in %d load(s), %.2f s", table.engine, granularity.name,
             start.isoformat(), end.isoformat(), outcome.rows, outcome.loads, outcome.seconds)
    return outcome

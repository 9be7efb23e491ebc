"""The first day of the pipeline's partitions (day partitions of the events, hours, days and weeks of the
aggregations): ``WORKDEV_PARTITIONS_START`` (``YYYY-MM-DD``, UTC) when set -- what a deployment sets, to the first
day of its data; unset, ``workdev-pipeline dev`` sets it to the day of the store's earliest event (a fresh demo's
first day) and anything else loading the code location uses the last :data:`DEFAULT_DAYS` days.

Days before the start have no partition: their events are still swept and held, but a sweep records no
materialization for them and the UI cannot backfill them (docs/architecture.md#partitions)."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

import psycopg

from workdev_pipeline.sql_files import query

PARTITIONS_START_ENV = "WORKDEV_PARTITIONS_START"
#: Without the variable (a bare ``dg dev``, the tests' own processes): the partitions of the last 30 days.
DEFAULT_DAYS = 30


def partitions_start(today: date | None = None) -> date:
    """The configured first day (ValueError, naming the variable, when it is not a date), or the default."""
    configured = os.environ.get(PARTITIONS_START_ENV, "").strip()
    if not configured:
        return (today or datetime.now(UTC).date()) - timedelta(days=DEFAULT_DAYS)
    try:
        return date.fromisoformat(configured)
    except ValueError:
        raise ValueError(f"{PARTITIONS_START_ENV} must be a day as YYYY-MM-DD, got {configured!r}") from None


def earliest_event_day(database_url: str) -> date | None:
    """The UTC day of the store's earliest event; None when the store is empty."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(query("ingest/earliest_event_day")).fetchone()[0]
